"""skcds.datasets: the shared benchmark files, the search order and the missing-file message."""

from __future__ import annotations

import numpy as np
import pytest

from skcds import datasets
from skcds.datasets import load_ionosphere, load_pines


def _shared_or_skip(loader):
    try:
        return loader()
    except FileNotFoundError as error:
        pytest.skip(f"the shared data is absent: {error}")


def test_pines_are_126_points_in_the_unit_square():
    points = _shared_or_skip(load_pines)
    assert points.shape == (126, 2) and points.dtype == np.float64
    assert points.min() >= 0.0 and points.max() <= 1.0


def test_ionosphere_is_standardised_with_a_bias_column():
    X, y = _shared_or_skip(load_ionosphere)
    assert X.shape == (351, 35) and y.shape == (351,)
    np.testing.assert_array_equal(X[:, 0], np.ones(351))
    np.testing.assert_allclose(X[:, 1:].mean(0), 0.0, atol=1e-12)
    std = X[:, 1:].std(0)
    constant = std == 0  # the second raw feature is zero for every radar return
    assert constant.sum() == 1
    np.testing.assert_allclose(std[~constant], 1.0, rtol=1e-12)
    assert set(np.unique(y)) == {0, 1} and y.sum() == 225  # 225 "good" returns in UCI


def write_pines(folder, rows=((0.1, 0.2), (0.3, 0.4))):
    folder.mkdir(parents=True, exist_ok=True)
    lines = ['"","data_x","data_y"'] + [f'"{i}",{x},{y}' for i, (x, y) in enumerate(rows)]
    (folder / "pines.csv").write_text("\n".join(lines) + "\n")
    return folder / "pines.csv"


def test_path_may_be_the_file_or_its_folder(tmp_path):
    file = write_pines(tmp_path)
    np.testing.assert_array_equal(load_pines(file), [[0.1, 0.2], [0.3, 0.4]])
    np.testing.assert_array_equal(load_pines(str(tmp_path)), [[0.1, 0.2], [0.3, 0.4]])


def test_environment_variable_comes_first(tmp_path, monkeypatch):
    write_pines(tmp_path / "env", rows=[(0.5, 0.5)])
    monkeypatch.setenv("SKCDS_DATA", str(tmp_path / "env"))
    np.testing.assert_array_equal(load_pines(), [[0.5, 0.5]])


def test_current_directory_is_searched(tmp_path, monkeypatch):
    write_pines(tmp_path / "shared" / "data", rows=[(0.25, 0.75)])
    monkeypatch.delenv("SKCDS_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    np.testing.assert_array_equal(load_pines(), [[0.25, 0.75]])


def test_missing_file_message_lists_every_place_looked(tmp_path, monkeypatch):
    (tmp_path / "env").mkdir()
    (tmp_path / "a" / "b").mkdir(parents=True)
    monkeypatch.setenv("SKCDS_DATA", str(tmp_path / "env"))
    monkeypatch.chdir(tmp_path / "a" / "b")
    monkeypatch.setattr(datasets, "_PACKAGE_DATA_DIR", tmp_path / "package" / "shared" / "data")
    with pytest.raises(FileNotFoundError) as e:
        load_ionosphere()
    looked = ", ".join(
        str(p)
        for p in [
            tmp_path / "env",
            tmp_path / "a" / "b" / "shared" / "data",
            tmp_path / "a" / "shared" / "data",
            tmp_path / "package" / "shared" / "data",
        ]
    )
    assert str(e.value) == (
        f"Could not find the data file 'ionosphere.csv'; looked in: {looked}. Pass "
        "path='/path/to/ionosphere.csv' (or a folder that contains it), or set the "
        "SKCDS_DATA environment variable to such a folder. skcds never downloads data."
    )


def test_missing_explicit_path_message(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        load_pines(tmp_path / "nowhere.csv")
    assert str(e.value) == (
        "'path' must be the file 'pines.csv' or a folder that contains it; got "
        f"{str(tmp_path / 'nowhere.csv')!r}, and {str(tmp_path / 'nowhere.csv')!r} does not "
        "exist."
    )


def test_missing_column_message(tmp_path):
    (tmp_path / "pines.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ValueError) as e:
        load_pines(tmp_path)
    assert str(e.value) == (
        f"{str(tmp_path / 'pines.csv')!r} has no column(s) ['data_x', 'data_y']; its header "
        "is ['a', 'b']."
    )
