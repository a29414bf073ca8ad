"""The policy the tool-validation tests are written against (fixed, whatever the shipped one).

The shipped default policy is calibrated on the simulator and changes with it; the tests of the
apply path need fixed numbers: γ in [0.05, 50] with default 1.0, largest step 50 %, approvals
beyond 30 %, 60 s cooldown.
"""

from __future__ import annotations

from cfa.risk.policy import ParamBounds, Policy, load_policy

_base = load_policy("default")
TOOL_POLICY: Policy = _base.model_copy(
    update={
        "params": _base.params.model_copy(
            update={
                "gamma": ParamBounds(
                    min=0.05, max=50.0, default=1.0, max_step=0.5, cooldown_s=60, approval_step=0.3
                )
            }
        )
    }
)
