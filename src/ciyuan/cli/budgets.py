"""``ciyuan budgets``: spend caps per API key or account and period, with soft thresholds.

A budget refuses requests (402 ``budget_exceeded``) once settled spend plus pending holds would
pass its amount in the current period, whatever credit the account still holds. Thresholds
(percent of the amount) fire a signed webhook once per period when settled spend reaches them.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from ciyuan.cli.context import opened_store
from ciyuan.cli.output import JsonOption, emit, fail, table
from ciyuan.clock import us_to_datetime
from ciyuan.errors import InvalidRequest
from ciyuan.metering.budgets import PERIODS, Budget, BudgetStatus, iso_z, parse_thresholds
from ciyuan.metering.ports import WebhookDelivery
from ciyuan.pricing.money import CURRENCY, Amount, MoneyError

group = typer.Typer(help="Set, list and remove spend caps (budgets).", no_args_is_help=True)


def budget_json(budget: Budget) -> dict[str, Any]:
    return {
        "id": budget.id,
        "account": budget.account_name,
        "key": budget.api_key_prefix,
        "period": budget.period,
        "amount": str(budget.amount),
        "currency": CURRENCY,
        "thresholds": list(budget.thresholds_pct),
        "webhook": budget.webhook_url,
    }


def status_json(status: BudgetStatus) -> dict[str, Any]:
    end_us = status.period.end_us
    return {
        **budget_json(status.budget),
        "period_start": iso_z(status.period.start_us),
        "resets": iso_z(end_us) if end_us is not None else None,
        "spent": str(status.spent),
        "held": str(status.held),
        "remaining": str(status.remaining),
    }


def delivery_json(delivery: WebhookDelivery) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "event": delivery.event,
        "budget": delivery.budget_id,
        "period_start": iso_z(delivery.period_start_us),
        "threshold": delivery.threshold_pct,
        "state": delivery.state,
        "attempts": delivery.attempts,
        "last_status": delivery.last_status,
        "last_error": delivery.last_error,
        "created": us_to_datetime(delivery.created_us).isoformat(),
    }


@group.command("set")
def set_(
    ctx: typer.Context,
    amount: Annotated[str, typer.Option("--amount", help=f"The cap in {CURRENCY}, e.g. 50.")],
    account: Annotated[
        str | None, typer.Option("--account", help="Cap this whole account (name or id).")
    ] = None,
    key: Annotated[
        str | None, typer.Option("--key", help="Cap this API key (prefix ck-… or id).")
    ] = None,
    period: Annotated[
        str, typer.Option("--period", help=f"One of {', '.join(PERIODS)} (UTC periods).")
    ] = "month",
    thresholds: Annotated[
        str, typer.Option("--thresholds", help="Percents that fire a webhook, e.g. 50,80,100.")
    ] = "",
    webhook: Annotated[
        str | None, typer.Option("--webhook", help="URL that receives threshold webhooks.")
    ] = None,
    as_json: bool = JsonOption,
) -> None:
    """Create or replace the budget of an account or key for a period (spend so far is kept)."""
    if (account is None) == (key is None):
        fail(InvalidRequest("give exactly one of --account or --key"), as_json=as_json)
    try:
        cap = Amount.parse(amount)
        percents = parse_thresholds(thresholds)
    except (MoneyError, ValueError) as error:
        fail(InvalidRequest(str(error)), as_json=as_json)
    with opened_store(ctx, as_json=as_json) as store:
        if key is not None:
            record = store.get_api_key(key)
            account_id, api_key_id = record.account_id, record.id
        else:
            assert account is not None
            account_id, api_key_id = store.get_account(account).id, None
        budget = store.set_budget(
            account_id=account_id, api_key_id=api_key_id, period=period, amount=cap,
            thresholds_pct=percents, webhook_url=webhook,
        )  # fmt: skip
    emit(
        {"budget": budget_json(budget)},
        as_json=as_json,
        human=f"{budget.period} budget of {budget.amount} {CURRENCY} for {budget.subject} "
        f"({budget.id})",
    )


@group.command("list")
def list_(
    ctx: typer.Context,
    account: Annotated[
        str | None, typer.Option("--account", help="Only this account's budgets.")
    ] = None,
    as_json: bool = JsonOption,
) -> None:
    """List budgets with the current period's spend, pending holds and reset time."""
    with opened_store(ctx, as_json=as_json) as store:
        owner_id = store.get_account(account).id if account else None
        statuses = store.list_budgets(owner_id)
    rows = [status_json(s) for s in statuses]
    emit(
        {"budgets": rows},
        as_json=as_json,
        human=table(
            "Budgets",
            ["Id", "Account", "Key", "Period", "Amount", "Spent", "Held", "Resets", "Thresholds"],
            [
                [
                    r["id"],
                    r["account"],
                    r["key"] or "(account)",
                    r["period"],
                    r["amount"],
                    r["spent"],
                    r["held"],
                    r["resets"] or "never",
                    ",".join(str(t) for t in r["thresholds"]),
                ]
                for r in rows
            ],
        ),
    )


@group.command("remove")
def remove(
    ctx: typer.Context,
    budget_id: Annotated[str, typer.Argument(help="The budget's id (bud_…).")],
    as_json: bool = JsonOption,
) -> None:
    """Remove a budget; requests are no longer capped by it."""
    with opened_store(ctx, as_json=as_json) as store:
        budget = store.remove_budget(budget_id)
    emit(
        {"budget": budget_json(budget)},
        as_json=as_json,
        human=f"removed the {budget.period} budget of {budget.subject}",
    )


@group.command("webhooks")
def webhooks(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="Newest first.")] = 50,
    as_json: bool = JsonOption,
) -> None:
    """List threshold webhooks: delivered, pending (with attempts), failed or unsent."""
    with opened_store(ctx, as_json=as_json) as store:
        deliveries = store.list_webhook_deliveries(limit=limit)
    rows = [delivery_json(d) for d in deliveries]
    emit(
        {"webhooks": rows},
        as_json=as_json,
        human=table(
            "Budget webhooks",
            ["Id", "Budget", "Period", "Threshold", "State", "Attempts", "Last error"],
            [
                [
                    r["id"],
                    r["budget"],
                    r["period_start"],
                    f"{r['threshold']} %",
                    r["state"],
                    r["attempts"],
                    r["last_error"] or "",
                ]
                for r in rows
            ],
        ),
    )


def register(app: typer.Typer) -> None:
    app.add_typer(group, name="budgets")
