"""Check digits and structure of Chinese identifiers (pure functions, no regexes).

- Resident identity card, GB 11643-1999: 6-digit region code, birth date YYYYMMDD,
  3-digit sequence, ISO 7064 MOD 11-2 check character (``X`` = 10). The 15-digit cards
  issued before 1999 carry YYMMDD (19YY) and no check character.
- Unified Social Credit Code, GB 32100-2015: 18 characters from a 31-symbol alphabet
  (digits and capitals without I, O, Z, S, V); characters 9-17 are the organization code
  of GB 11714 with its own MOD 11 check character (``X`` = 10, ``0`` = 11); character 18 is
  a MOD 31 check over the first 17.
- Bank cards: the Luhn (mod 10) check of ISO/IEC 7812.
"""

from __future__ import annotations

from datetime import date

# First two digits of GB/T 2260 region codes: provinces, autonomous regions and
# municipalities (11 Beijing … 65 Xinjiang), 71 Taiwan, 81 Hong Kong, 82 Macao, 83 (cards
# for Hong Kong, Macao and Taiwan residents living on the mainland use 81/82/83).
PROVINCE_CODES = frozenset(
    {11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46,
     50, 51, 52, 53, 54, 61, 62, 63, 64, 65, 71, 81, 82, 83}
)  # fmt: skip

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"

USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)
_ORG_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"  # A = 10 … Z = 35


def _valid_region(code: str) -> bool:
    if len(code) != 6 or not code.isdigit():
        return False
    return int(code[:2]) in PROVINCE_CODES and code[2:] != "0000"


def _valid_birth(year: int, month: int, day: int, today: date | None) -> bool:
    try:
        born = date(year, month, day)
    except ValueError:
        return False
    return date(1900, 1, 1) <= born <= (today or date.today())


def resident_id_check_char(first17: str) -> str:
    """The MOD 11-2 check character of the first 17 digits."""
    total = sum(int(c) * w for c, w in zip(first17, _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11]


def valid_resident_id(text: str, today: date | None = None) -> bool:
    """An 18-digit (check digit) or 15-digit (legacy) resident ID number."""
    value = text.upper()
    if len(value) == 18:
        if not value[:17].isdigit() or value[17] not in "0123456789X":
            return False
        year, month, day = int(value[6:10]), int(value[10:12]), int(value[12:14])
        return (
            _valid_region(value[:6])
            and _valid_birth(year, month, day, today)
            and resident_id_check_char(value[:17]) == value[17]
        )
    if len(value) == 15 and value.isdigit():
        year, month, day = 1900 + int(value[6:8]), int(value[8:10]), int(value[10:12])
        return _valid_region(value[:6]) and _valid_birth(year, month, day, today)
    return False


def org_code_check_char(first8: str) -> str:
    """GB 11714 organization-code check character of its first 8 characters."""
    total = sum(_ORG_ALPHABET.index(c) * w for c, w in zip(first8, _ORG_WEIGHTS, strict=True))
    check = 11 - total % 11
    return "X" if check == 10 else "0" if check == 11 else str(check)


def uscc_check_char(first17: str) -> str:
    """GB 32100 check character of the first 17 characters."""
    total = sum(USCC_ALPHABET.index(c) * w for c, w in zip(first17, _USCC_WEIGHTS, strict=True))
    return USCC_ALPHABET[(31 - total % 31) % 31]


def valid_uscc(text: str) -> bool:
    """An 18-character Unified Social Credit Code with both check characters right."""
    value = text.upper()
    if len(value) != 18 or any(c not in USCC_ALPHABET for c in value):
        return False
    if not value[2:8].isdigit() or not _valid_region(value[2:8]):
        return False
    org = value[8:17]
    if any(c not in _ORG_ALPHABET for c in org[:8]) or org_code_check_char(org[:8]) != org[8]:
        return False
    return uscc_check_char(value[:17]) == value[17]


def luhn_complete(body: str) -> str:
    """``body`` followed by the digit that makes it pass the Luhn check."""
    for digit in "0123456789":
        if luhn_valid(body + digit):
            return body + digit
    raise ValueError(f"not digits: {body!r}")


def luhn_valid(digits: str) -> bool:
    """The Luhn check over a string of digits."""
    if not digits.isdigit():
        return False
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = int(c)
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


# Issuer identification numbers (ISO/IEC 7812 IIN prefixes) of the cards people in China
# carry, with the lengths each scheme issues: UnionPay 62 (16–19), the domestic cards of
# the big banks before UnionPay, 95… (9558 ICBC, 95599 ABC; 16–19), 60 (Discover 6011, and
# cards of mainland banks in that range; 16–19), Visa 4 (16 or 19), Mastercard 51–55 and
# 2221–2720 (16), JCB 3528–3589 (16–19). Public scheme rules, written out here.
def plausible_card(digits: str) -> bool:
    """Whether a 16–19-digit number could be a card of a scheme used in China."""
    n = len(digits)
    if not 16 <= n <= 19 or not digits.isdigit():
        return False
    if digits.startswith(("62", "95", "60")):
        return True
    if digits[0] == "4":
        return n in (16, 19)
    if 51 <= int(digits[:2]) <= 55 or 2221 <= int(digits[:4]) <= 2720:
        return n == 16
    return 3528 <= int(digits[:4]) <= 3589


def id_shaped(digits: str) -> bool:
    """An 18-digit number laid out like a resident ID (a region code, then a year of
    birth): a mistyped ID (a wrong check digit, 0231), not a card that passes Luhn."""
    if len(digits) != 18 or not _valid_region(digits[:6]):
        return False
    return 1900 <= int(digits[6:10]) <= 2100
