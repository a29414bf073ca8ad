"""Reading a YAML document that is either a file path or the name of one shipped with cfa."""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def read_named_or_path(source: str | Path, package: str, folder: str) -> tuple[str, str]:
    """``(text, label)`` of ``source``: a path (ending in ``.yaml``/``.yml``, or existing) or the
    name of a document packaged in ``package`` (shipped from the repository's ``folder``).

    ``label`` names the file in error messages. Raises :class:`LookupError` for an unknown name
    and :class:`OSError` for an unreadable file, each with a message naming it.
    """
    name = str(source)
    path = Path(name)
    if path.suffix in (".yaml", ".yml") or path.exists():
        try:
            return path.read_text(encoding="utf-8"), str(path)
        except OSError as exc:
            raise OSError(f"{path}: cannot read file ({exc.strerror})") from exc
    label = f"{folder}/{name}.yaml"
    try:
        return resources.files(package).joinpath(f"{name}.yaml").read_text("utf-8"), label
    except (FileNotFoundError, OSError):
        raise LookupError(f"{label}: nothing shipped named {name!r}") from None
