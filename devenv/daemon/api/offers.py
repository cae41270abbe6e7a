"""/v1/offers: the cloud GPU offers that fit a request, cheapest first; an admin may refresh them from AWS.

No `from __future__ import annotations` here: FastAPI must see the caller dependency's real type.
"""

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from devenv import wire
from devenv.backends.cloud.aws import AwsBackend, catalogue_path, current_catalogue
from devenv.backends.cloud.offers import match, parse_gpu_request
from devenv.backends.cloud.refresh import refresh
from devenv.daemon.api.authz import Rule, allow
from devenv.daemon.services.access import Caller
from devenv.daemon.services.backends import Backends
from devenv.errors import Forbidden


def offer_router(backends: Backends, caller: Callable[..., Caller | Awaitable[Caller]]) -> APIRouter:
    router = APIRouter(prefix="/v1", dependencies=[Depends(caller)], tags=["offers"])
    actor_type = Annotated[Caller, Depends(caller)]

    def aws() -> AwsBackend | None:
        return next(
            (entry.backend for entry in backends.entries.values() if isinstance(entry.backend, AwsBackend)), None
        )

    @router.get("/offers", response_model=wire.OfferList, **allow(Rule.MEMBER))
    def list_offers(
        gpu: str | None = None,
        spot: bool = False,
        region: Annotated[list[str] | None, Query()] = None,
        max_price: float | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 20,
    ) -> dict[str, Any]:
        """Offers with at least the asked GPUs, cheapest first, from the shipped or refreshed catalogue."""
        catalogue = current_catalogue()
        found = match(
            catalogue, parse_gpu_request(gpu) if gpu else None, spot=spot, regions=region, max_price=max_price
        )
        items = [{**offer.to_json(), "price": offer.price(spot), "spot": spot} for offer in found[:limit]]
        return {
            "items": items,
            "total": len(found),
            "updated": catalogue.updated.isoformat(),
            "source": catalogue.source,
        }

    @router.post("/offers/refresh", response_model=wire.OffersRefreshed, **allow(Rule.ADMIN))
    def refresh_offers(actor: actor_type) -> dict[str, Any]:
        """Prices, shapes and zones from AWS itself (the aws backend's endpoint and regions), kept by this daemon."""
        if not actor.admin:
            raise Forbidden("only an admin of this daemon can refresh the offers")
        backend = aws()
        fresh = refresh(
            current_catalogue(),
            regions=backend.regions if backend else None,
            endpoint_url=backend.ec2.endpoint_url if backend else None,
        )
        path = catalogue_path()
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fresh.save(path)
        return {"offers": len(fresh.offers), "updated": fresh.updated.isoformat(), "source": fresh.source}

    return router
