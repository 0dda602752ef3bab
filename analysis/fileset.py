"""The coffea fileset in ``datasets.json``: loading, validation, atomic updates.

A fileset maps a dataset name to ``{"files": {path: tree}, "metadata": {...}}``,
the shape ``coffea.dataset_tools.preprocess`` takes. Relative file paths are
relative to the folder holding the JSON file, so a repository checkout or a copied
results folder stays valid wherever it lives; :func:`load_fileset` returns them
absolute.

Metadata keys written by ``aejets generate`` (all optional for a user's files):
``process``, ``signal`` (true for signal processes), ``xsec_pb``, ``xsec_err_pb``,
``n_events``, ``sum_weights``, ``shower``, ``seed``, ``generator``.
``aejets run`` also reads ``generate``: the recipe used to make missing files,
``{"process": ..., "events": ..., "seed": ..., "shower": ...}``.
"""

import contextlib
import json
import os
import tempfile
from pathlib import Path

from analysis.errors import ConfigError, OutputError

__all__ = [
    "atomic_path",
    "check_dataset_name",
    "load_fileset",
    "publish",
    "register_dataset",
    "write_json_atomic",
]


def load_fileset(path, datasets=None):
    """Read and validate a fileset; file paths come back absolute.

    ``datasets`` restricts the result to those names (an unknown one is an error
    that lists the names the fileset has).
    """
    path = Path(path)
    raw = _read_json(path)
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{path}: a fileset must be a JSON object mapping dataset names to "
            f"{{'files': {{path: tree}}, 'metadata': {{...}}}}, not {type(raw).__name__}"
        )
    if datasets is not None:
        missing = [name for name in datasets if name not in raw]
        if missing:
            raise ConfigError(
                f"{path}: no dataset named {', '.join(map(repr, missing))}; "
                f"the fileset has {', '.join(map(repr, sorted(raw))) or 'none'}"
            )
        raw = {name: raw[name] for name in datasets}
    return {name: _validate_entry(path, name, entry) for name, entry in raw.items()}


def _validate_entry(path, name, entry):
    check_dataset_name(name, path)
    if not isinstance(entry, dict) or not isinstance(entry.get("files", {}), dict):
        raise ConfigError(
            f"{path}: dataset {name!r} must hold 'files' as an object "
            "mapping each file path to its tree name (usually 'Delphes')"
        )
    files = {}
    for file, tree in entry.get("files", {}).items():
        if not isinstance(tree, str):
            raise ConfigError(
                f"{path}: dataset {name!r}, file {file!r}: the tree name must be a "
                f"string such as 'Delphes', not {tree!r}"
            )
        files[_absolute(path.parent, file)] = tree
    metadata = entry.get("metadata", {})
    if not isinstance(metadata, dict):
        raise ConfigError(f"{path}: dataset {name!r}: 'metadata' must be an object")
    return {"files": files, "metadata": dict(metadata)}


def check_dataset_name(name, where="the fileset"):
    """Dataset names become folder names: refuse ones that could leave the folder."""
    if (
        not isinstance(name, str)
        or not name.strip()
        or name in {".", ".."}
        or any(c in name for c in "/\\\0")
    ):
        raise ConfigError(
            f"{where}: dataset name {name!r} cannot name a folder; use letters, "
            "digits, '_', '-' or '.', without '/'"
        )
    return name


def _absolute(base, file):
    # Remote URLs (root://, https://, s3://) pass through untouched.
    if "://" in file:
        return file
    return str((base / file).resolve()) if not os.path.isabs(file) else file


def register_dataset(path, name, files, metadata):
    """Add or replace one dataset of the fileset at ``path``, atomically.

    Paths under the fileset's folder are stored relative to it. A file that is not
    valid JSON is never overwritten: the error names it.
    """
    path = Path(path)
    check_dataset_name(name, path)
    fileset = _read_json(path) if path.exists() else {}
    if not isinstance(fileset, dict):
        raise ConfigError(f"{path}: not a fileset (a JSON object); left untouched")
    base = path.parent.resolve()
    stored = {}
    for file, tree in files.items():
        file = Path(file).resolve()
        try:
            stored[str(file.relative_to(base))] = tree
        except ValueError:
            stored[str(file)] = tree
    fileset[name] = {"files": stored, "metadata": metadata}
    write_json_atomic(path, fileset)


def write_json_atomic(path, payload):
    """Write JSON under a temporary name in the same folder, then rename."""
    with atomic_path(path) as partial, partial.open("w") as handle:
        json.dump(payload, handle, indent=2)
        handle.write("\n")


@contextlib.contextmanager
def atomic_path(path, advice="choose a writable folder", suffix=".tmp"):
    """A temporary file beside ``path`` for the block to write; then ``path``.

    The yielded temporary (hidden, ``.<name>.<random><suffix>``; pass the final
    suffix where a writer insists on it) is given the mode of a normal file and
    renamed to ``path`` when the block ends without error. Whatever happens, no
    temporary is left behind, and a partial file never sits under ``path``. An
    ``OSError`` (a folder that cannot be written, a full disk) becomes an
    :class:`OutputError` naming ``path`` and ending with ``advice``.
    """
    path = Path(path)
    partial = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, partial = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.", suffix=suffix
        )
        os.close(handle)
        yield Path(partial)
        publish(partial)
        os.replace(partial, path)
    except OSError as err:
        raise OutputError(
            f"cannot write {path}: {err.strerror or err}; {advice}"
        ) from err
    finally:
        if partial is not None:  # renamed when complete; else a partial file
            Path(partial).unlink(missing_ok=True)


def _read_umask():
    # os.umask can only be read by setting it: done once, at import.
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def publish(path):
    """Give a temporary file or folder the mode ``open()``/``mkdir()`` would give.

    ``tempfile`` creates files 0600 and folders 0700, and renaming keeps the mode:
    call this just before renaming a temporary into place, so that colleagues and
    dask workers running as another user can read the output as the umask allows
    (0644 files and 0755 folders with umask 022).
    """
    path = Path(path)
    mode = 0o777 if path.is_dir() else 0o666
    os.chmod(path, mode & ~_UMASK)


def _read_json(path):
    try:
        text = Path(path).read_text()
    except FileNotFoundError as err:
        raise ConfigError(f"fileset {path} does not exist") from err
    except OSError as err:
        raise ConfigError(f"cannot read fileset {path}: {err.strerror}") from err
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(
            f"{path} is not valid JSON (line {err.lineno}, column {err.colno}: "
            f"{err.msg}); fix or remove it"
        ) from err
