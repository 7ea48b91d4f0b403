"""Money as bankmesh understands it: an integer count of minor units of one currency.

There is deliberately no float path in: `Money(1.5, "EUR")` raises
`LossyAmountError`, as django-hordak's `LossyCalculationError` does, because
a float amount has already lost cents before we ever see it.

Currencies are ISO 4217 alphabetic codes; `MINOR_UNIT_EXPONENTS` lists the
active ones with their number of decimal places, which is what turns 1050
minor units of EUR into "10.50" and 1050 of JPY into "1050".
"""

from __future__ import annotations

from dataclasses import dataclass

INT64_MAX = 2**63 - 1

# ISO 4217 active codes and their minor-unit exponents (List One, 2024).
# Funds codes and precious metals are left out on purpose: they are not
# currencies an account of ours is held in.
_EXPONENT_2 = (
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BRL BSD BTN BWP BYN BZD "
    "CAD CDF CHF CNY COP CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD "
    "GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK LBP LKR LRD LSL MAD "
    "MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP "
    "PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS "
    "TMT TOP TRY TTD TWD TZS UAH USD UYU UZS VES WST XCD XCG YER ZAR ZMW ZWG"
)
_EXPONENT_0 = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
_EXPONENT_3 = "BHD IQD JOD KWD LYD OMR TND"

MINOR_UNIT_EXPONENTS: dict[str, int] = {
    **{code: 2 for code in _EXPONENT_2.split()},
    **{code: 0 for code in _EXPONENT_0.split()},
    **{code: 3 for code in _EXPONENT_3.split()},
}


class MoneyError(ValueError):
    """Base of the errors this module raises."""


class UnknownCurrencyError(MoneyError):
    """The code is not an active ISO 4217 currency."""


class LossyAmountError(MoneyError):
    """An amount arrived as something other than an exact integer (a float, say)."""


def is_currency(code: str) -> bool:
    return code in MINOR_UNIT_EXPONENTS


def check_currency(code: str) -> str:
    if not is_currency(code):
        raise UnknownCurrencyError(f"{code!r} is not an ISO 4217 currency code (e.g. 'EUR')")
    return code


@dataclass(frozen=True, slots=True)
class Money:
    """An exact amount: `minor_units` of `currency` (1050 EUR minor units = EUR 10.50)."""

    minor_units: int
    currency: str

    def __post_init__(self) -> None:
        # bool is an int subclass; True cents is a bug, not an amount.
        if type(self.minor_units) is not int:
            raise LossyAmountError(
                f"amounts are integers of minor units, got {type(self.minor_units).__name__}"
            )
        check_currency(self.currency)

    def format(self) -> str:
        """Human form, e.g. 'EUR 10.50'; exact for any size (integer arithmetic, no rounding)."""
        exponent = MINOR_UNIT_EXPONENTS[self.currency]
        sign = "-" if self.minor_units < 0 else ""
        whole, fraction = divmod(abs(self.minor_units), 10**exponent)
        if exponent == 0:
            return f"{self.currency} {sign}{whole}"
        return f"{self.currency} {sign}{whole}.{fraction:0{exponent}d}"

    def __str__(self) -> str:
        return self.format()
