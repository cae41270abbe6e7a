"""`devenv offers`: which cloud GPU instances fit a request, cheapest first (the order `backend: aws` tries)."""

from __future__ import annotations

import json
import sys

import click

from devenv.cli.clicktools import command
from devenv.client import Client


@command("offers")
@click.option("--gpu", metavar="TYPE[:COUNT]", help='GPUs to fit: "A100:1", "H100:8", "T4" or a count')
@click.option("--spot", is_flag=True, help="spot prices (offers without a spot market are left out)")
@click.option("--region", "regions", multiple=True, metavar="REGION", help="only these regions (repeat)")
@click.option("--max-price", type=float, metavar="USD", help="at most this much per hour")
@click.option("--limit", type=click.IntRange(1, 500), default=10, help="how many to show")
@click.option("--refresh", is_flag=True, help="first refresh prices, shapes and zones from AWS (admin)")
@click.option("--json", "as_json", is_flag=True, help="machine-readable")
def offers(
    gpu: str | None,
    spot: bool,
    regions: tuple[str, ...],
    max_price: float | None,
    limit: int,
    refresh: bool,
    as_json: bool,
) -> None:
    """Cloud GPU offers that fit, cheapest first: instance type, GPUs, memory, region, price per hour."""
    client = Client()
    if refresh:
        done = client.refresh_offers()
        click.echo(f"refreshed {done['offers']} offers ({done['source']})", err=True)
    answer = client.offers(gpu=gpu, spot=spot, regions=list(regions), max_price=max_price, limit=limit)
    if as_json:
        json.dump(answer, sys.stdout, indent=2)
        print()
        return
    items = answer["items"]
    if not items:
        click.echo(f"no offer has {gpu or 'those'} GPUs" + (f" under ${max_price}/h" if max_price else ""), err=True)
        sys.exit(1)
    rows = [("INSTANCE", "GPUS", "GPU MEM", "VCPUS", "MEMORY", "REGION", "ZONES", "SPOT $/H" if spot else "$/H")]
    for item in items:
        rows.append(
            (
                item["instance_type"],
                f"{item['gpu_count']}x {item['gpu_type']}",
                f"{item['gpu_memory_gib']:g} GiB",
                str(item["vcpus"]),
                f"{item['memory_gib']:g} GiB",
                item["region"],
                str(len(item["zones"])),
                f"{item['price']:.3f}",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    shown = f"{len(items)} of {answer['total']}" if answer["total"] > len(items) else str(len(items))
    click.echo(f"({shown}; prices as of {answer['updated']})", err=True)
