"""Episode files and the readers: round-trip, corrupt files, the shuffled frame stream."""

from __future__ import annotations

import numpy as np
import pytest

from worldmodels.rollouts import (
    EpisodeReader,
    FrameStream,
    episode_path,
    read_episode,
    write_episode,
)


def synthetic_episode(index: int, length: int) -> dict[str, np.ndarray]:
    """Frames whose first two bytes encode (episode, step), so each frame is unique."""
    obs = np.zeros((length, 64, 64, 3), dtype=np.uint8)
    obs[:, 0, 0, 0] = index
    obs[:, 0, 0, 1] = np.arange(length)
    return {
        "obs": obs,
        "action": np.full((length, 1), index, dtype=np.float32),
        "reward": np.ones(length, dtype=np.float32),
        "terminated": np.eye(1, length, length - 1, dtype=bool)[0],
        "truncated": np.zeros(length, dtype=bool),
        "seed": np.int64(index),
    }


def frame_ids(batch: np.ndarray) -> list[tuple[int, int]]:
    return [(int(f[0, 0, 0]), int(f[0, 0, 1])) for f in batch]


@pytest.fixture
def episodes_dir(tmp_path):
    lengths = [30, 5, 120, 64, 1, 77]
    for i, n in enumerate(lengths):
        write_episode(episode_path(tmp_path, i), synthetic_episode(i, n))
    return tmp_path, lengths


def test_write_read_round_trip(tmp_path):
    episode = synthetic_episode(3, 50)
    write_episode(tmp_path / "000003.npz", episode)
    loaded = read_episode(tmp_path / "000003.npz")
    assert loaded.keys() == episode.keys()
    for key in episode:
        assert loaded[key].dtype == np.asarray(episode[key]).dtype
        np.testing.assert_array_equal(loaded[key], episode[key])
    assert not list(tmp_path.glob(".*"))  # no temporary left behind


def test_failed_write_keeps_previous_file(tmp_path):
    path = tmp_path / "000000.npz"
    write_episode(path, synthetic_episode(0, 10))
    broken = synthetic_episode(1, 10)
    del broken["reward"]
    with pytest.raises(KeyError):
        write_episode(path, broken)
    assert read_episode(path)["seed"] == 0
    assert not list(tmp_path.glob(".*"))


def test_corrupt_files_are_skipped_with_a_warning(episodes_dir):
    directory, lengths = episodes_dir
    data = episode_path(directory, 2).read_bytes()
    episode_path(directory, 2).write_bytes(data[: len(data) // 2])  # truncated
    episode_path(directory, 4).write_bytes(b"not a zip file")
    reader = EpisodeReader(directory)
    with pytest.warns(UserWarning, match=r"skipping unreadable episode .*00000[24]\.npz"):
        seen = [path.name for path, _ in reader]
    assert seen == ["000000.npz", "000001.npz", "000003.npz", "000005.npz"]
    assert [p.name for p in reader.skipped] == ["000002.npz", "000004.npz"]

    stream = FrameStream(directory, batch_size=16, buffer_frames=64)
    with pytest.warns(UserWarning, match="skipping unreadable episode"):
        total = sum(len(batch) for batch in stream)
    assert total == sum(lengths) - lengths[2] - lengths[4]
    assert len(stream.skipped) == 2


def test_wrong_frame_size_is_skipped(tmp_path):
    episode = synthetic_episode(0, 4)
    episode["obs"] = np.zeros((4, 96, 96, 3), dtype=np.uint8)
    write_episode(tmp_path / "000000.npz", episode)
    with pytest.warns(UserWarning, match=r"expected uint8 \[T, \*\(64, 64, 3\)\]"):
        assert read_episode(tmp_path / "000000.npz") is None


@pytest.mark.parametrize("buffer_frames", [16, 100, 1000])
def test_frame_stream_visits_every_frame_once_per_epoch(episodes_dir, buffer_frames):
    directory, lengths = episodes_dir
    expected = sorted((i, t) for i, n in enumerate(lengths) for t in range(n))
    stream = FrameStream(directory, batch_size=16, buffer_frames=buffer_frames, seed=1)
    orders = []
    for _ in range(2):
        batches = list(stream)
        assert all(b.shape[1:] == (64, 64, 3) and b.dtype == np.uint8 for b in batches)
        assert all(len(b) == 16 for b in batches[:-1])
        ids = [fid for b in batches for fid in frame_ids(b)]
        assert sorted(ids) == expected
        orders.append(ids)
    assert orders[0] != orders[1]  # a new order every epoch


def test_frame_stream_mixes_episodes(episodes_dir):
    directory, _ = episodes_dir
    first = next(iter(FrameStream(directory, batch_size=32, buffer_frames=200, seed=0)))
    assert len({episode for episode, _ in frame_ids(first)}) >= 3


def test_frame_stream_rejects_bad_sizes(episodes_dir):
    with pytest.raises(ValueError, match="batch_size <= buffer_frames"):
        FrameStream(episodes_dir[0], batch_size=64, buffer_frames=32)
