"""A Triton model repository of the trained scorers, for an existing Triton server.

``export_repository(MODELS, REPO)`` writes, for each ``MODELS/<name>/saved_model``::

    REPO/<name>/config.pbtxt              platform "tensorflow_savedmodel"
    REPO/<name>/1/model.savedmodel/       a copy of the SavedModel

The configuration is read off the SavedModel's ``serving_default`` signature:
input ``images`` FP32 [37, 37, 1], outputs ``loss`` and ``reconstruction``, with
dynamic batching. ``loss`` is (batch,) in the signature; Triton needs at least one
dimension besides the batch, so it is declared ``dims: [1]`` with
``reshape: { shape: [] }``, the documented form of a batch-only tensor.
"""

import logging
import shutil
import tempfile
from pathlib import Path

from analysis.errors import InputError, OutputError

__all__ = ["export_repository", "model_config_text", "signature_tensors"]

log = logging.getLogger(__name__)

SIGNATURE = "serving_default"
TF_TO_TRITON = {"float32": "TYPE_FP32", "float64": "TYPE_FP64", "int32": "TYPE_INT32"}


def signature_tensors(saved_model_dir):
    """({input: (dtype, shape)}, {output: (dtype, shape)}) of the serving signature.

    Shapes include the batch axis as None, e.g. ``(None, 37, 37, 1)``.
    """
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(str(saved_model_dir))
        signature = loaded.signatures[SIGNATURE]
    except (OSError, ValueError, KeyError) as err:
        raise InputError(
            f"cannot read the {SIGNATURE!r} signature of SavedModel {saved_model_dir}: "
            f"{err}; re-export the model with 'aejets train'"
        ) from err
    _, input_specs = signature.structured_input_signature
    inputs = {
        name: (spec.dtype.name, tuple(spec.shape)) for name, spec in input_specs.items()
    }
    outputs = {
        name: (spec.dtype.name, tuple(spec.shape))
        for name, spec in signature.structured_outputs.items()
    }
    return inputs, outputs


def _tensor_block(name, dtype, shape, saved_model_dir):
    if dtype not in TF_TO_TRITON:
        raise InputError(
            f"SavedModel {saved_model_dir}: tensor {name!r} has type {dtype}, which "
            f"this export does not map; supported: {', '.join(TF_TO_TRITON)}"
        )
    if not shape or shape[0] is not None:
        raise InputError(
            f"SavedModel {saved_model_dir}: tensor {name!r} has shape {shape}; the "
            "first axis must be the batch (None) for dynamic batching"
        )
    dims = list(shape[1:])
    lines = [f'    name: "{name}"', f"    data_type: {TF_TO_TRITON[dtype]}"]
    if dims:
        lines.append(f"    dims: [ {', '.join(str(d) for d in dims)} ]")
    else:  # batch-only tensor such as loss (batch,)
        lines += ["    dims: [ 1 ]", "    reshape: { shape: [ ] }"]
    return "  {\n" + "\n".join(lines) + "\n  }"


def model_config_text(name, inputs, outputs, saved_model_dir, max_batch_size=4096):
    """The ``config.pbtxt`` of one model."""

    def blocks(tensors):
        return ",\n".join(
            _tensor_block(tensor, dtype, shape, saved_model_dir)
            for tensor, (dtype, shape) in sorted(tensors.items())
        )

    return (
        f'name: "{name}"\n'
        'platform: "tensorflow_savedmodel"\n'
        f"max_batch_size: {max_batch_size}\n"
        f"input [\n{blocks(inputs)}\n]\n"
        f"output [\n{blocks(outputs)}\n]\n"
        "dynamic_batching {\n"
        f"  preferred_batch_size: [ {max_batch_size} ]\n"
        "  max_queue_delay_microseconds: 200\n"
        "}\n"
        "version_policy: { latest: { num_versions: 1 } }\n"
    )


def _check_replaceable(out_dir, models_dir):
    """Refuse to replace a folder that is not an earlier Triton repository.

    Replacing ``out_dir`` whole must never take a user's other files, or the
    models being exported, with it.
    """
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise OutputError(f"--out {out_dir} is a file, not a folder; choose a folder")
    resolved = out_dir.resolve()
    if resolved == models_dir.resolve() or resolved in models_dir.resolve().parents:
        raise OutputError(
            f"--out {out_dir} holds the models being exported ({models_dir}); "
            "choose a new folder for the repository"
        )
    foreign = sorted(
        entry.name
        for entry in out_dir.iterdir()
        if not (entry.is_dir() and (entry / "config.pbtxt").is_file())
    )
    if foreign:
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise OutputError(
            f"refusing to replace {out_dir}: it holds {shown}, which are not Triton "
            "model folders; choose a new or empty folder for --out"
        )


def export_repository(models_dir, out_dir, max_batch_size=4096, names=None):
    """Write the Triton model repository of every model; returns the model names.

    The repository is written next to ``out_dir`` and then moved into place, so an
    existing ``out_dir`` is replaced whole or not at all; only an earlier
    repository (every entry a model folder with ``config.pbtxt``) is replaced.
    """
    from models.serving import model_names

    models_dir, out_dir = Path(models_dir), Path(out_dir)
    _check_replaceable(out_dir, models_dir)
    names = names or model_names(models_dir)
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    except OSError as err:
        raise OutputError(
            f"cannot create {out_dir}: {err}; choose a writable --out"
        ) from err
    try:
        for name in names:
            saved_model = models_dir / name / "saved_model"
            inputs, outputs = signature_tensors(saved_model)
            target = staging / name
            shutil.copytree(saved_model, target / "1" / "model.savedmodel")
            (target / "config.pbtxt").write_text(
                model_config_text(name, inputs, outputs, saved_model, max_batch_size)
            )
            log.info("exported %s to %s", name, out_dir / name)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    except OSError as err:
        raise OutputError(f"cannot write the repository {out_dir}: {err}") from err
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return names
