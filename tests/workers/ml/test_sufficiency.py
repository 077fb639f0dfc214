"""Data warnings: a model fitted on too little data says so, with the measured evidence."""

from __future__ import annotations

from workers.ml.sufficiency import (
    FEW_DEFECTS_PER_CLASS,
    FEW_GOODS_FOR_ANOMALY,
    anomaly_data_warnings,
    classifier_data_warnings,
)


def test_a_classifier_with_enough_examples_of_every_class_has_no_warning() -> None:
    assert classifier_data_warnings(fitted_per_class={"crack": FEW_DEFECTS_PER_CLASS, "fray": 200}) == []


def test_a_classifier_names_each_class_it_saw_too_few_of_with_its_count() -> None:
    (warning,) = classifier_data_warnings(
        fitted_per_class={"fray": 7, "blowhole": 80, "crack": FEW_DEFECTS_PER_CLASS - 1}
    )
    assert "crack (29), fray (7)" in warning and "blowhole" not in warning
    assert "91 % from all" in warning  # the measured curve comes with it
    assert f"at least {FEW_DEFECTS_PER_CLASS} of each class" in warning


def test_an_anomaly_model_fitted_on_few_goods_warns_and_one_on_enough_does_not() -> None:
    assert anomaly_data_warnings(fit_goods=FEW_GOODS_FOR_ANOMALY) == []
    (warning,) = anomaly_data_warnings(fit_goods=40)
    assert warning.startswith("Fitted on only 40 good parts")
