"""The one table of declared lifetimes: every cached resource of every interface by name
(the booking API's, chalicelib/booking/resources.py, and FHIR's, chalicelib/fhir/), as the
cache (which applies a stage's overrides) and the settings (which check their names) read it.
The domain lists only its own resources; this module, above both, joins the lists."""
from __future__ import annotations

from chalicelib.booking.resources import RESOURCES
from chalicelib.cache.policies import Freshness


def declared_freshness() -> dict[str, Freshness]:
    """Each cached resource's declared lifetimes, by name."""
    from chalicelib.fhir.bulk import BULK  # the FHIR modules build on the booking resources
    from chalicelib.fhir.resources import FHIR_RESOURCES

    return {r.name: r.freshness for r in (*RESOURCES, *FHIR_RESOURCES, BULK)}
