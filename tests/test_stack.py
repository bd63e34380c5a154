"""Finding inputs, reading their years, and refusing bad stacks with one clear message."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rasterio.transform import from_origin

from pipeline.engine.stack import open_stack
from pipeline.errors import GridMismatchError, InputError, UsageError, YearError
from pipeline.years import compile_year_pattern, format_years, parse_years, year_from_text

from .conftest import write_raster


def _layers(n: int, rows: int = 4, cols: int = 5) -> np.ndarray:
    return np.arange(n * rows * cols, dtype=np.float32).reshape(n, rows, cols)


@pytest.mark.parametrize(
    ("name", "year"),
    [
        ("ndvi_2003.tif", 2003),
        ("L5_1987_max.tif", 1987),
        ("ndvi-2001-0000019968-0000000000.tif", 2001),  # split export: offset hides a false 1996
        ("ndvi-0000019968-0000000000.tif", None),
        ("tile20051.tif", None),  # part of a longer number
        ("study2010v2.tif", 2010),
    ],
)
def test_default_year_pattern(name: str, year: int | None) -> None:
    assert year_from_text(name, compile_year_pattern(None)) == year


def test_parse_and_format_years() -> None:
    assert parse_years("1995-1998,2000, 2003..2004") == [1995, 1996, 1997, 1998, 2000, 2003, 2004]
    assert format_years([2003, 1995, 1996, 1997, 2000]) == "1995-1997,2000,2003"
    with pytest.raises(UsageError, match="runs backwards"):
        parse_years("2005-2001")
    with pytest.raises(UsageError, match="cannot read 'abc'"):
        parse_years("abc")


def test_years_sorted_numerically_not_by_name(make_stack) -> None:
    folder, _, _ = make_stack(_layers(3), [2010, 1999, 2005], name="b_{year}.tif")
    (folder / "b_2010.tif").rename(folder / "a_2010.tif")  # name order now differs from year order
    stack = open_stack(folder)
    assert stack.year_list == [1999, 2005, 2010]
    assert Path(stack.layers[-1].path).name == "a_2010.tif"


def test_glob_and_year_selection(make_stack) -> None:
    folder, _, _ = make_stack(_layers(5), [2000, 2001, 2002, 2003, 2004])
    stack = open_stack(str(folder / "ndvi_200[0-3].tif"), years=[2001, 2003, 2000])
    assert stack.year_list == [2000, 2001, 2003]
    with pytest.raises(YearError, match=r"year\(s\) 2010 requested but not in the input"):
        open_stack(folder, years=[2000, 2001, 2010])


def test_custom_year_pattern(make_stack) -> None:
    folder, _, _ = make_stack(_layers(3), [1, 2, 3], name="scene_{year}_x.tif")
    with pytest.raises(YearError, match="cannot find a year in the name scene_1_x.tif"):
        open_stack(folder)
    stack = open_stack(folder, year_pattern=r"scene_(\d+)_x")
    assert stack.year_list == [1, 2, 3]


def test_duplicate_year_names_both_files(make_stack, tmp_path) -> None:
    folder, _, _ = make_stack(_layers(3), [2001, 2002, 2003])
    write_raster(folder / "ndvi_2002_v2.tif", _layers(1)[0])
    with pytest.raises(YearError, match="year 2002 appears twice: ndvi_2002.tif and ndvi_2002_v2.tif"):
        open_stack(folder)


def test_multiband_years_from_descriptions_and_from_option(tmp_path) -> None:
    data = _layers(4)
    described = write_raster(tmp_path / "stack.tif", data, descriptions=["ndvi 2004", "2001", "y2003", "2002"])
    stack = open_stack(described)
    assert stack.year_list == [2001, 2002, 2003, 2004]
    assert [layer.band for layer in stack.layers] == [2, 4, 3, 1]

    plain = write_raster(tmp_path / "plain.tif", data)
    with pytest.raises(YearError, match="pass --years with 4 years in band order"):
        open_stack(plain)
    with pytest.raises(YearError, match="--years gives 3 years but plain.tif has 4 bands"):
        open_stack(plain, years=[2000, 2001, 2002])
    assert open_stack(plain, years=[2000, 2001, 2002, 2005]).year_list == [2000, 2001, 2002, 2005]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"crs": "EPSG:32634"}, "CRS differs"),
        ({"transform": from_origin(500_030, 5_000_000, 30, 30)}, "transform differs"),
        ({"shape": (4, 6)}, "shape differs"),
        ({"bands": 2}, "band count differs"),
    ],
)
def test_grid_mismatch_names_the_file_and_difference(make_stack, kwargs, message) -> None:
    folder, _, _ = make_stack(_layers(3), [2001, 2002, 2003])
    rows, cols = kwargs.pop("shape", (4, 5))
    data = np.zeros((kwargs.pop("bands", 1), rows, cols), dtype=np.float32)
    write_raster(folder / "ndvi_2004.tif", data, **kwargs)
    with pytest.raises(GridMismatchError, match=f"ndvi_2004.tif is not on the grid of ndvi_2001.tif: {message}"):
        open_stack(folder)


def test_missing_empty_and_corrupt_inputs(tmp_path, make_stack) -> None:
    with pytest.raises(InputError, match="does not exist"):
        open_stack(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no rasters found in"):
        open_stack(tmp_path / "empty")
    folder, _, _ = make_stack(_layers(3), [2001, 2002, 2003])
    (folder / "ndvi_2004.tif").write_bytes(b"II*\x00 this is not a tiff")
    with pytest.raises(InputError, match="cannot open .*ndvi_2004.tif"):
        open_stack(folder)


def test_too_few_years(make_stack) -> None:
    folder, _, _ = make_stack(_layers(2), [2001, 2002])
    with pytest.raises(YearError, match="only 2 years .* but --min-years is 3"):
        open_stack(folder)
    assert open_stack(folder, min_years=2).year_list == [2001, 2002]


def test_read_masks_nodata_and_nan(make_stack) -> None:
    data = _layers(3).astype(np.int16)
    data[1, 0, 0] = -999
    folder, _, _ = make_stack(data, [2001, 2002, 2003], nodata=-999)
    values = open_stack(folder).read()
    assert values.dtype == np.float32 and values.shape == (3, 20)
    assert np.isnan(values[1, 0]) and np.isfinite(values).sum() == 59
