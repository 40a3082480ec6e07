"""The local health directory: one per user and project, private, never written through a link.

By default it sits in the shared temporary directory, where any local user can create a name
first. So the directory must be this user's own and private (0700), a record is written to a
fresh temporary file and renamed into place, and a record is read only when it is a regular
file this user owns.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import sys
import tempfile
from collections.abc import Iterable, Iterator
from importlib.machinery import PathFinder
from pathlib import Path

from worker.errors import ConfigurationError

HEALTH_DIR_ENV = "CHANNEL_WORKER_HEALTH_DIR"
SETTINGS_ENV = "DJANGO_SETTINGS_MODULE"
# The project directory of a worker whose settings module has no name (settings.configure()).
UNNAMED_PROJECT = "unnamed"
RECORD_SUFFIX = ".json"
# Records are a few hundred bytes; a larger file is not one.
MAX_RECORD_BYTES = 1 << 20
PRIVATE_MODE = 0o700
_NOT_IN_A_NAME = re.compile(r"[^A-Za-z0-9_.-]")


def default_base_dir() -> Path:
    """This user's directory of project directories in the system temporary directory."""
    return Path(tempfile.gettempdir()) / f"channel-worker-{os.geteuid()}"


def project_name(settings_module: str | None) -> str:
    """The directory name of a project: its settings module, made one safe path component."""
    name = _NOT_IN_A_NAME.sub("_", settings_module or "")
    return name if name.strip(".") else UNNAMED_PROJECT


def project_dir(settings_module: str | None) -> Path:
    """Where the workers of the project run with ``settings_module`` keep their records.

    ``CHANNEL_WORKER_HEALTH_DIR``, when set, is that directory; otherwise it is
    ``<tmp>/channel-worker-<uid>/<settings module>``.
    """
    configured = os.environ.get(HEALTH_DIR_ENV)
    if configured:
        return Path(configured)
    return default_base_dir() / project_name(settings_module)


def find_settings_file(settings_module: str | None, search_path: Iterable[str]) -> str | None:
    """The file ``settings_module`` would be imported from with ``search_path`` as ``sys.path``,
    found by the import system's path finder without importing anything.

    Two projects on a host may both have ``mysite.settings``; where their files are tells them
    apart. None when the module is not found there.
    """
    if not settings_module:
        return None
    locations: list[str] | None = list(search_path)
    origin = None
    for part in settings_module.split("."):
        if locations is None:
            return None  # A module where a package is needed.
        # Asked by its last name alone, as the finder of each directory matches it: a dotted
        # name would make the finder look its parent up in sys.modules, where it is not.
        spec = PathFinder.find_spec(part, locations)
        if spec is None:
            return None
        origin = spec.origin
        if origin is None:
            # A namespace package, whose own path would be recomputed from sys.path: every
            # directory of that name along the search path.
            locations = [str(Path(entry) / part) for entry in locations]
            locations = [entry for entry in locations if Path(entry).is_dir()]
        else:
            paths = spec.submodule_search_locations
            locations = list(paths) if paths is not None else None
    return str(Path(origin).resolve()) if origin and Path(origin).is_file() else None


def loaded_settings_file(settings_module: str | None) -> str | None:
    """The source file of ``settings_module`` as this process imported it, if it did."""
    module = sys.modules.get(settings_module or "")
    path = getattr(module, "__file__", None)
    return str(Path(path).resolve()) if path else None


def projects_on_this_host() -> list[str]:
    """The project directories under this user's default location."""
    with contextlib.suppress(OSError):
        base = default_base_dir()
        if directory_problem(base) is None:
            return sorted(entry.name for entry in os.scandir(base) if entry.is_dir())
    return []


def directory_problem(path: Path) -> str | None:
    """Why ``path`` is not a private directory of this user; None when it is one."""
    try:
        found = os.lstat(path)
    except FileNotFoundError:
        return f"health directory {path} does not exist"
    if stat.S_ISLNK(found.st_mode):
        return f"health directory {path} is a symbolic link"
    if not stat.S_ISDIR(found.st_mode):
        return f"health directory {path} is not a directory"
    if found.st_uid != os.geteuid():
        return (
            f"health directory {path} is owned by uid {found.st_uid}, not by this user "
            f"(uid {os.geteuid()})"
        )
    if found.st_mode & 0o077:
        return (
            f"health directory {path} has mode {stat.S_IMODE(found.st_mode):04o}, open to "
            f"other users (expected {PRIVATE_MODE:04o})"
        )
    return None


def prepare_dir(directory: Path) -> None:
    """Create ``directory`` private if it is missing; refuse it if it is not private and ours.

    Under the default location the per-user parent is held to the same rule.
    """
    if directory.parent == default_base_dir():
        _ensure_private(directory.parent)
    else:
        directory.parent.mkdir(parents=True, exist_ok=True)
    _ensure_private(directory)


def _ensure_private(path: Path) -> None:
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, PRIVATE_MODE)
    problem = directory_problem(path)
    if problem is not None:
        raise ConfigurationError(
            f"{problem}: refusing to keep health records there. Remove it, or set "
            f"{HEALTH_DIR_ENV} to a directory this user owns with mode 0700."
        )


def write_record(directory: Path, name: str, text: str) -> None:
    """Replace ``directory/name`` with ``text`` without following a link planted there."""
    prepare_dir(directory)
    # mkstemp opens a new name with O_EXCL | O_NOFOLLOW, mode 0600; rename replaces whatever
    # is at the target name, a link included, instead of writing through it.
    descriptor, temporary = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as file:
            file.write(text)
        os.replace(temporary, directory / name)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def read_records(directory: Path) -> Iterator[str]:
    """The text of each record in ``directory`` that is a regular file this user owns.

    Links, other users' files and anything that is not a record are skipped.
    """
    try:
        names = sorted(entry.name for entry in os.scandir(directory))
    except OSError:
        return
    for name in names:
        if name.endswith(RECORD_SUFFIX) and not name.startswith("."):
            text = _read_own_file(directory / name)
            if text is not None:
                yield text


def _read_own_file(path: Path) -> str | None:
    try:
        # O_NONBLOCK: a FIFO named like a record must not stall the probe.
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    with os.fdopen(descriptor, "rb") as file:
        found = os.fstat(descriptor)
        if not stat.S_ISREG(found.st_mode) or found.st_uid != os.geteuid():
            return None
        return file.read(MAX_RECORD_BYTES).decode("utf-8", errors="replace")
