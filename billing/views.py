"""The desk's price lookup: an htmx fragment the booking form fetches as the receptionist types.

Thin: the query string is read by ``lookup_params``, the rows come from
``selectors.price_lookup``. A value that cannot be used answers 400 with the same fragment
showing the message, so htmx can swap it in where the table would be.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from patients.views import requires

from .errors import BillingError
from .lookup_params import lookup_params_from
from .policies import can_look_up_prices
from .selectors import PRICE_LOOKUP_LIMIT

TEMPLATE = "billing/_price_lookup.html"


@require_GET
@requires(can_look_up_prices)
def price_lookup_fragment(request: HttpRequest) -> HttpResponse:
    """Services matching the search with their price for the payer on the date."""
    try:
        params = lookup_params_from(actor=request.user, data=request.GET)
    except BillingError as error:
        context = {"error": error.message, "error_field": error.field}
        return render(request, TEMPLATE, context, status=400)
    rows = params.rows(request.user)
    context = {
        "params": params,
        "rows": rows,
        "limited": len(rows) >= PRICE_LOOKUP_LIMIT,
        "limit": PRICE_LOOKUP_LIMIT,
    }
    return render(request, TEMPLATE, context)
