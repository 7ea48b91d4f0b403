"""Money is an exact integer of minor units in a known currency, shown with its decimals."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest

from services.common.money import (
    INT64_MAX,
    MINOR_UNIT_EXPONENTS,
    LossyAmountError,
    Money,
    MoneyError,
    UnknownCurrencyError,
    check_currency,
    is_currency,
)


@pytest.mark.parametrize(
    "amount",
    [10.5, 10.0, Decimal("10.50"), Decimal(10), Fraction(21, 2), True, "1050"],
    ids=["float", "whole float", "decimal", "whole decimal", "fraction", "bool", "string"],
)
def test_an_amount_that_is_not_an_exact_integer_is_refused(amount: object) -> None:
    """Floats, decimals, bools and strings raise LossyAmountError instead of guessing cents."""
    with pytest.raises(LossyAmountError, match="integers of minor units"):
        Money(amount, "EUR")  # type: ignore[arg-type]


@pytest.mark.parametrize("code", ["XYZ", "eur", "EURO", "", "XAU", "BOV"])
def test_a_code_that_is_not_an_active_currency_is_refused(code: str) -> None:
    """Unknown, lower-case, funds and precious-metal codes raise UnknownCurrencyError."""
    with pytest.raises(UnknownCurrencyError, match="ISO 4217"):
        Money(100, code)
    assert not is_currency(code)
    with pytest.raises(UnknownCurrencyError):
        check_currency(code)


def test_money_errors_are_value_errors() -> None:
    """Callers catching ValueError also catch every money error."""
    assert issubclass(LossyAmountError, MoneyError)
    assert issubclass(UnknownCurrencyError, MoneyError)
    assert issubclass(MoneyError, ValueError)


def test_a_known_currency_passes_check_currency_unchanged() -> None:
    """check_currency returns the code it was given, so it can wrap an assignment."""
    assert check_currency("EUR") == "EUR"
    assert is_currency("JPY") and is_currency("KWD")


@pytest.mark.parametrize(
    ("minor_units", "currency", "shown"),
    [
        (1050, "EUR", "EUR 10.50"),
        (5, "EUR", "EUR 0.05"),
        (0, "EUR", "EUR 0.00"),
        (100, "USD", "USD 1.00"),
        (1050, "JPY", "JPY 1050"),
        (0, "JPY", "JPY 0"),
        (1050, "KWD", "KWD 1.050"),
        (1, "BHD", "BHD 0.001"),
        (0, "TND", "TND 0.000"),
    ],
)
def test_an_amount_is_shown_with_its_currencys_number_of_decimals(
    minor_units: int, currency: str, shown: str
) -> None:
    """Two decimals for EUR, none for JPY, three for KWD: 1050 minor units read accordingly."""
    money = Money(minor_units, currency)
    assert money.format() == shown
    assert str(money) == shown


@pytest.mark.parametrize(
    ("minor_units", "currency", "shown"),
    [
        (-1050, "EUR", "EUR -10.50"),
        (-5, "EUR", "EUR -0.05"),
        (-1050, "JPY", "JPY -1050"),
        (-1, "KWD", "KWD -0.001"),
    ],
)
def test_a_negative_amount_is_shown_with_a_minus_sign(
    minor_units: int, currency: str, shown: str
) -> None:
    """An overdrawn balance reads as a negative amount, with the same decimals."""
    assert Money(minor_units, currency).format() == shown


def test_the_largest_ledger_amount_is_shown_exactly() -> None:
    """INT64_MAX minor units of EUR loses no digit on the way to text."""
    assert Money(INT64_MAX, "EUR").format() == "EUR 92233720368547758.07"
    assert Money(-INT64_MAX, "KWD").format() == "KWD -9223372036854775.807"


def test_an_amount_longer_than_28_digits_is_shown_exactly() -> None:
    """Money accepts any integer, so its text should not round one with 29 digits or more."""
    assert Money(10**30 + 1, "EUR").format() == "EUR 10000000000000000000000000000.01"


def test_money_is_an_immutable_value() -> None:
    """Equal amounts are equal and hashable; changing one in place is impossible."""
    assert Money(100, "EUR") == Money(100, "EUR") != Money(100, "USD")
    assert len({Money(100, "EUR"), Money(100, "EUR")}) == 1
    with pytest.raises(AttributeError):
        Money(100, "EUR").minor_units = 5  # type: ignore[misc]


def test_every_listed_currency_has_zero_two_or_three_decimals() -> None:
    """The minor-unit table covers the common currencies with their ISO exponents."""
    assert set(MINOR_UNIT_EXPONENTS.values()) == {0, 2, 3}
    assert {c: MINOR_UNIT_EXPONENTS[c] for c in ("EUR", "USD", "GBP", "JPY", "KWD", "CHF")} == {
        "EUR": 2,
        "USD": 2,
        "GBP": 2,
        "JPY": 0,
        "KWD": 3,
        "CHF": 2,
    }
