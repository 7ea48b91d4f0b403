"""`python -m services.risk.cli`: train and evaluate the risk model.

`app` is a typer application, so the `bankmesh` command can mount it as
`bankmesh risk`:

    train --out PATH   fit the models on the synthetic stream, write the model
                       file, print its SHA-256 (pin it in the ruleset)
    evaluate           held-out PR-AUC and recall at 1 % false positives per
                       fraud scenario, for the served score, the model alone,
                       the rules alone and a random baseline; then the
                       decisions on legitimate traffic and on each scenario

Both regenerate the synthetic stream from its seed; `evaluate` scores with
the ruleset's pinned model, exactly as the service would.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from services.risk.adapters.ruleset_file import DEFAULT_RULESET, load_ruleset, read_ruleset
from services.risk.domain.model import Decision
from services.risk.domain.ruleset import RulesetError
from services.risk.synthetic import SyntheticConfig
from services.risk.training import SCORERS, Evaluation, evaluate, train

app = typer.Typer(
    help="Train and evaluate the risk service's fraud model.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()

RulesetOption = Annotated[
    Path, typer.Option("--ruleset", help="Ruleset TOML (windows; pinned model for evaluate).")
]
SeedOption = Annotated[int, typer.Option("--seed", help="Seed of the synthetic stream.")]
CustomersOption = Annotated[int, typer.Option("--customers", help="Synthetic customers.")]
DaysOption = Annotated[int, typer.Option("--days", help="Days of synthetic activity.")]

_DEFAULTS = SyntheticConfig()


def _config(seed: int, customers: int, days: int) -> SyntheticConfig:
    return SyntheticConfig(seed=seed, customers=customers, days=days)


@app.command("train")
def train_command(
    out: Annotated[Path, typer.Option("--out", help="Where to write the model file.")],
    ruleset: RulesetOption = DEFAULT_RULESET,
    seed: SeedOption = _DEFAULTS.seed,
    customers: CustomersOption = _DEFAULTS.customers,
    days: DaysOption = _DEFAULTS.days,
) -> None:
    """Train on the synthetic stream and write the model file."""
    try:
        rules = read_ruleset(ruleset)
    except RulesetError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    with console.status("Generating the stream and fitting the models..."):
        trained = train(_config(seed, customers, days), rules)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(trained.content)
    digest = hashlib.sha256(trained.content).hexdigest()
    data = trained.dataset
    console.print(
        f"trained on {data.split} transactions "
        f"({int(data.y[: data.split].sum())} fraudulent); wrote {out} "
        f"({len(trained.content) / 1024:.0f} KiB)"
    )
    # Plain echo: a hash must never be wrapped across lines by the terminal width.
    typer.echo(f"sha256 {digest}")
    typer.echo(f'pin it in the ruleset\'s [model] table: sha256 = "{digest}"')


@app.command("evaluate")
def evaluate_command(
    ruleset: RulesetOption = DEFAULT_RULESET,
    seed: SeedOption = _DEFAULTS.seed,
    customers: CustomersOption = _DEFAULTS.customers,
    days: DaysOption = _DEFAULTS.days,
) -> None:
    """Score the held-out (later) part of the stream and compare with the baselines."""
    try:
        config = load_ruleset(ruleset)
    except RulesetError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from exc
    with console.status("Generating the stream and scoring the held-out part..."):
        result = evaluate(_config(seed, customers, days), config.ruleset, config.model)
    console.print(metrics_table(result, config.ruleset.version, config.model.version))
    console.print(decisions_table(result))


def metrics_table(result: Evaluation, ruleset_version: str, model_version: str) -> Table:
    table = Table(
        title=(
            f"Held-out evaluation ({result.test_rows} transactions after the time split; "
            f"ruleset {ruleset_version}, model {model_version})"
        )
    )
    table.add_column("scenario")
    table.add_column("fraud", justify="right")
    for scorer in SCORERS:
        table.add_column(f"PR-AUC\n{scorer}", justify="right")
    for scorer in SCORERS:
        table.add_column(f"recall@1%FPR\n{scorer}", justify="right")
    for row in result.results:
        table.add_row(
            row.scenario,
            str(row.positives),
            *(f"{row.pr_auc[s]:.3f}" for s in SCORERS),
            *(f"{row.recall_at_fpr[s]:.3f}" for s in SCORERS),
        )
    return table


def decisions_table(result: Evaluation) -> Table:
    table = Table(title="Decisions on the held-out transactions")
    table.add_column("truth")
    for decision in Decision:
        table.add_column(decision.value, justify="right")
    for truth, counts in result.decisions.items():
        total = sum(counts.values())
        if not total:
            continue  # a scenario without held-out transactions (small --customers/--days)
        table.add_row(truth, *(f"{counts[d]} ({100 * counts[d] / total:.1f}%)" for d in Decision))
    return table


if __name__ == "__main__":
    app()
