"""Broken inputs and injected faults for the reliability tests.

Files: :func:`garbage_file`, :func:`truncated_copy`, :func:`corrupt_basket_copy`
and :func:`rewrite_delphes` (read some collections of a Delphes file, change
them, write them back in the Delphes layout). Faults: :class:`KillOnce`, a
processor wrapper whose worker process kills itself the first time it meets a
given event, and :class:`FailWhile`, whose chunks of one dataset fail as a
stopped Triton server makes them fail.
"""

import os
import signal
from pathlib import Path

import awkward as ak
import numpy as np
from coffea.processor import ProcessorABC

EFLOW = ("EFlowTrack", "EFlowPhoton", "EFlowNeutralHadron")


def garbage_file(path, size=4096, seed=0):
    """A file of random bytes: not a ROOT file at all."""
    data = np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8)
    Path(path).write_bytes(data.tobytes())
    return Path(path)


def truncated_copy(source, target, fraction=0.5):
    """The first ``fraction`` of ``source``'s bytes, as a download cut short."""
    data = Path(source).read_bytes()
    Path(target).write_bytes(data[: int(len(data) * fraction)])
    return Path(target)


def corrupt_basket_copy(source, target, branch="EFlowTrack/EFlowTrack.PT"):
    """A copy whose first basket of ``branch`` is garbage: reading it fails."""
    import uproot

    with uproot.open(source) as handle:
        leaf = handle["Delphes"][branch]
        seek = int(leaf.member("fBasketSeek")[0])
        size = int(leaf.member("fBasketBytes")[0])
    data = bytearray(Path(source).read_bytes())
    data[seek + size // 2 : seek + size] = b"\xff" * (size - size // 2)
    Path(target).write_bytes(bytes(data))
    return Path(target)


def read_collections(path, names=("Event", *EFLOW)):
    """{collection: (events, objects) record with fields "X.Field"} of a file."""
    import uproot

    with uproot.open(path) as handle:
        tree = handle["Delphes"]
        out = {}
        for name in names:
            arrays = tree.arrays(filter_name=f"{name}/*")
            out[name] = ak.zip(
                {f.split("/", 1)[1]: arrays[f] for f in arrays.fields}, depth_limit=2
            )
    return out


def write_delphes(path, collections):
    """Write {collection: (events, objects) records} as a Delphes ``Delphes`` tree.

    Zero events give a tree with zero entries.
    """
    import uproot

    with uproot.recreate(path) as handle:
        tree = handle.mktree(
            "Delphes",
            {name: array.type.content for name, array in collections.items()},
            counter_name=lambda counter: counter + "_size",
            field_name=lambda outer, inner: outer + "/" + inner,
        )
        if len(next(iter(collections.values()))):
            tree.extend(collections)
    return Path(path)


def rewrite_delphes(source, target, change=None, names=("Event", *EFLOW)):
    """Copy ``names`` of ``source`` to ``target``, after ``change(collections)``."""
    collections = read_collections(source, names)
    if change is not None:
        collections = change(collections)
    return write_delphes(target, collections)


def set_field(collection, field, events, value):
    """``collection`` with ``field`` set to ``value`` for every object of ``events``."""
    counts = ak.to_numpy(ak.num(collection))  # (events,)
    flat = ak.to_numpy(ak.flatten(collection[field])).copy()  # (objects,)
    owner = np.repeat(np.arange(len(counts)), counts)  # (objects,)
    flat[np.isin(owner, events)] = value
    return ak.with_field(collection, ak.unflatten(flat, counts), field)


def drop_objects(collection, events):
    """``collection`` with no objects in ``events`` (others unchanged)."""
    keep = ~np.isin(np.arange(len(collection)), events)  # (events,)
    return ak.where(keep, collection, collection[:, :0])


class _Injecting(ProcessorABC):
    """A processor wrapper that adds one fault-injecting column to the output.

    :meth:`_inject` returns a dask-awkward array computed from each chunk (or None
    for no fault on these events); its count goes into the output under ``KEY``
    beside the wrapped processor's output, and :meth:`postprocess` removes it
    again. Other attributes are those of the wrapped processor.
    """

    KEY = "_injected"

    def __getattr__(self, name):
        if name == "processor":  # not yet set (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.processor, name)

    def process(self, events):
        import dask_awkward as dak

        output = dict(self.processor.process(events))
        checked = self._inject(events)
        if checked is not None:
            output[self.KEY] = dak.num(checked, axis=0)
        return output

    def postprocess(self, accumulator):
        accumulator = dict(accumulator)
        accumulator.pop(self.KEY, None)
        return self.processor.postprocess(accumulator)

    def _inject(self, events):
        raise NotImplementedError


class KillOnce(_Injecting):
    """A processor wrapper whose worker process dies at event ``number``, once.

    Beside the wrapped processor's output it computes, from each chunk's
    ``Event.Number``, a count whose task kills its own worker process with
    SIGKILL (as the kernel's out-of-memory killer would) the first time it meets
    a chunk holding event ``number``. ``marker`` (a path) records that it
    happened, so the retried task runs through. :meth:`postprocess` removes the
    count again.
    """

    KEY = "_kill_once"

    def __init__(self, processor, marker, number):
        self.processor, self.marker, self.number = processor, str(marker), number

    def _inject(self, events):
        import dask_awkward as dak

        numbers = events.Event.Number
        return dak.map_partitions(
            _kill_once, numbers, self.marker, self.number, label="kill-once"
        )


def _kill_once(numbers, marker, number):
    if ak.backend(numbers) == "typetracer":
        ak.typetracer.touch_data(numbers)
        return numbers
    if number in ak.to_numpy(numbers) and not os.path.exists(marker):
        Path(marker).write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    return numbers


class FailWhile(_Injecting):
    """A processor wrapper: chunks of ``dataset`` fail while ``marker`` exists.

    Each failing chunk raises :class:`ServingError` naming ``url``, as a
    Triton scorer does once its retries are spent; removing ``marker`` brings the
    "server" back.
    """

    KEY = "_fail_while"

    def __init__(self, processor, marker, dataset, url):
        self.processor, self.marker = processor, str(marker)
        self.dataset, self.url = dataset, url

    def _inject(self, events):
        import dask_awkward as dak

        if events.metadata["dataset"] != self.dataset:
            return None
        return dak.map_partitions(
            _fail_while, events.Event.Number, self.marker, self.url, label="down"
        )


def _fail_while(numbers, marker, url):
    from analysis.errors import ServingError

    if ak.backend(numbers) == "typetracer":
        ak.typetracer.touch_data(numbers)
        return numbers
    if os.path.exists(marker):
        raise ServingError(f"the Triton server at {url} stopped answering (injected)")
    return numbers
