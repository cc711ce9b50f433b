"""Reading request parameters the billing pages and API share, with one refusal for each."""

from __future__ import annotations

import datetime

from django.utils.dateparse import parse_date
from django.utils.translation import gettext as _

from .errors import BillingError


def date_param(value: str, *, field: str) -> datetime.date:
    """``value`` as a date (YYYY-MM-DD), or a refusal naming the parameter and the value."""
    try:
        parsed = parse_date(value.strip())
    except ValueError:
        parsed = None
    if parsed is None:
        raise BillingError(
            "invalid_date",
            _("The parameter “%(field)s”: “%(value)s” is not a date (YYYY-MM-DD).")
            % {"field": field, "value": value},
            field=field,
        )
    return parsed
