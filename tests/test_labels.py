import numpy as np
import pytest

from train.data.labels import UCF, XD, label_map


def test_xd_multi_label_primary_first() -> None:
    primary, hot = XD.parse("G-B2-B6")
    assert primary == XD.codes.index("G")
    assert hot.tolist() == [0, 0, 1, 0, 0, 1, 1]


def test_xd_zero_fill_and_normal() -> None:
    assert XD.parse("B2-0-0")[0] == 2
    primary, hot = XD.parse("A")
    assert primary == 0 and hot.sum() == 1


def test_ucf_label() -> None:
    primary, hot = UCF.parse("RoadAccidents")
    assert primary == 8 and hot[8] == 1 and hot.sum() == 1
    assert UCF.num_classes == 14 and XD.num_classes == 7


def test_unknown_label_names_it() -> None:
    with pytest.raises(ValueError, match="'Kidnap'.*list.csv"):
        UCF.parse("Kidnap", where="list.csv")
    with pytest.raises(ValueError, match="unknown dataset"):
        label_map("kinetics")
