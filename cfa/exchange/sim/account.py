"""The simulator's account is the emulator's: see :mod:`cfa.exchange.emulator.account`.

Kept so that existing imports (the Kalshi stand-in's world) keep working.
"""

from cfa.exchange.emulator.account import Account

__all__ = ["Account"]
