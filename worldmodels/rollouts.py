"""Episodes on disk, and the readers later stages use.

One episode is one ``.npz`` file (zip, deflate level 1: about a third of the raw size,
and four times faster to write than numpy's default level) named ``<index>.npz``:

    obs         uint8   [T, 64, 64, 3]   frame seen before each action
    action      float32 [T, A]
    reward      float32 [T]
    terminated  bool    [T]              True at the last step if the game ended it
    truncated   bool    [T]              True at the last step if the step cap did
    seed        int64   []               the env seed this episode was played with

Files are read with ``allow_pickle=False``; a file that is truncated or malformed is
skipped with a warning naming it and counted, never a crash inside a training loop.
Nothing here loads more than one episode (plus a bounded shuffle buffer) into memory.
"""

from __future__ import annotations

import io
import os
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from worldmodels.envs import FRAME_SHAPE
from worldmodels.files import atomic_path

KEYS = ("obs", "action", "reward", "terminated", "truncated", "seed")
PER_STEP = ("obs", "action", "reward", "terminated", "truncated")


def episode_path(directory: str | os.PathLike, index: int) -> Path:
    return Path(directory) / f"{index:06d}.npz"


def held_out(index: int, val_every: int) -> bool:
    """Whether episode ``index`` is held out for validation (the same ones in V and M)."""
    return index % val_every == 0


def split_held_out(items: list, val_every: int, index=lambda item: item["index"]):
    """(train, val) of episodes (files or loaded dicts): those whose episode index
    (``index(item)``) is a multiple of ``val_every`` are held out, the same in V and M."""
    val = [item for item in items if held_out(index(item), val_every)]
    return [item for item in items if not held_out(index(item), val_every)], val


def episode_paths(directory: str | os.PathLike) -> list[Path]:
    """All episode files in ``directory``, sorted by index."""
    return sorted(p for p in Path(directory).glob("*.npz") if p.stem.isdigit())


def encode_episode(episode: dict[str, np.ndarray]) -> bytes:
    """One episode as the bytes of its ``.npz`` file (made where it was played, so that
    compressing it is spread over the workers)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for key in KEYS:
            with zf.open(f"{key}.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asarray(episode[key]), allow_pickle=False)
    return buffer.getvalue()


def write_episode(path: str | os.PathLike, episode: dict[str, np.ndarray] | bytes) -> None:
    """Write one episode (or its ``encode_episode`` bytes) atomically (temporary name,
    then rename)."""
    data = episode if isinstance(episode, bytes) else encode_episode(episode)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def read_episode(path: str | os.PathLike) -> dict[str, np.ndarray] | None:
    """Load one episode, or warn naming the file and return None if it is unreadable."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            episode = {key: npz[key] for key in KEYS}
        _check_episode(episode)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        warnings.warn(f"skipping unreadable episode {path}: {e}", stacklevel=2)
        return None
    return episode


def _check_episode(episode: dict[str, np.ndarray]) -> None:
    obs = episode["obs"]
    if obs.dtype != np.uint8 or obs.shape[1:] != FRAME_SHAPE:
        raise ValueError(f"obs is {obs.dtype} {obs.shape}, expected uint8 [T, *{FRAME_SHAPE}]")
    lengths = {key: len(episode[key]) for key in PER_STEP}
    if len(set(lengths.values())) != 1 or lengths["obs"] == 0:
        raise ValueError(f"per-step arrays differ in length or are empty: {lengths}")


def episode_length(path: str | os.PathLike) -> int:
    """Number of steps of an episode, reading only its small reward array (0 if unreadable)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            return len(npz["reward"])
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        warnings.warn(f"skipping unreadable episode {path}: {e}", stacklevel=2)
        return 0


class EpisodeReader:
    """Iterate over the readable episodes of a directory, one at a time.

    Attributes:
        skipped: paths of the files that could not be read (after a full pass).
    """

    def __init__(self, paths: str | os.PathLike | list[Path]):
        self.paths = episode_paths(paths) if isinstance(paths, str | os.PathLike) else paths
        self.skipped: list[Path] = []

    def __iter__(self) -> Iterator[tuple[Path, dict[str, np.ndarray]]]:
        self.skipped = []
        for path in self.paths:
            episode = read_episode(path)
            if episode is None:
                self.skipped.append(path)
            else:
                yield path, episode


class FrameStream:
    """Shuffled batches of frames across episodes, through a bounded buffer.

    Each pass (epoch) reads the episodes in a new random order and yields every frame of
    every readable episode exactly once, in batches of ``batch_size`` uint8
    ``[B, 64, 64, 3]`` arrays. Frames wait in a buffer of at most ``buffer_frames``; a
    batch is drawn at random from it, so frames of many episodes are mixed while memory
    stays at one buffer plus one episode however many episodes there are.

    Args:
        paths: A directory of episodes or a list of episode files.
        batch_size: Frames per batch; the last batch of an epoch may be smaller.
        buffer_frames: Capacity of the shuffle buffer (frames; 20,000 is 245 MB).
        seed: The order of epoch e is drawn from (seed, e).
    """

    def __init__(self, paths, batch_size: int, buffer_frames: int = 20_000, seed: int = 0):
        if batch_size < 1 or buffer_frames < batch_size:
            raise ValueError(
                f"need 1 <= batch_size <= buffer_frames, got {batch_size} and {buffer_frames}"
            )
        self.reader = EpisodeReader(paths)
        self.batch_size, self.buffer_frames, self.seed = batch_size, buffer_frames, seed
        self.epoch = 0

    @property
    def skipped(self) -> list[Path]:
        return self.reader.skipped

    def __iter__(self) -> Iterator[np.ndarray]:
        self.epoch += 1
        return self.batches(self.epoch - 1)

    def batches(self, epoch: int) -> Iterator[np.ndarray]:
        """The batches of epoch ``epoch``: the same ones, in the same order, every call."""
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(len(self.reader.paths))
        reader = EpisodeReader([self.reader.paths[i] for i in order])
        buffer = np.empty((self.buffer_frames, *FRAME_SHAPE), dtype=np.uint8)
        n = 0
        for _, episode in reader:
            frames = episode["obs"]
            while len(frames):
                if n == self.buffer_frames:
                    yield self._draw(buffer, n, rng)
                    n -= self.batch_size
                take = min(len(frames), self.buffer_frames - n)
                buffer[n : n + take] = frames[:take]
                n, frames = n + take, frames[take:]
        self.reader.skipped = reader.skipped
        rest = rng.permutation(n)
        for start in range(0, n, self.batch_size):
            yield buffer[rest[start : start + self.batch_size]]

    def _draw(self, buffer: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
        """Take a random batch out of ``buffer[:n]``, moving the tail into the holes."""
        chosen = rng.choice(n, size=self.batch_size, replace=False)
        batch = buffer[chosen]  # fancy indexing copies
        keep = n - self.batch_size
        holes = chosen[chosen < keep]
        movers = np.setdiff1d(np.arange(keep, n), chosen, assume_unique=True)
        buffer[holes] = buffer[movers]
        return batch
