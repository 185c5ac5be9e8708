"""SmartKasa shops are discoverable and configured in YAML (#16.2).

``erpsync inspect`` lists a platform's reference data live; ``smartkasa.shops`` in the tenant's
config is the shop table whatever the mapping's lookup is called; ``config check`` fails, with
the fix, when the shop ids a mapping needs cannot resolve; a ``422 shop_id: invalid`` tells the
user to fix the shop configuration, not the ERP row.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner, Result

from sync.cli import app
from sync.clients.smartkasa.errors import map_status_error
from sync.engine.shops import shop_fields, tenant_lookups
from sync.playground import Playground, shipped_mappings, start_playground
from sync.settings import load_settings


def _cli(config: Path, *args: str) -> Result:
    return CliRunner().invoke(app, list(args), env={"ERPSYNC_CONFIG": str(config), "COLUMNS": "240"})


def _config(pg: Playground, path: Path, *, shops: Any = "keep", mappings: list[Path] | None = None) -> Path:
    """The playground's config, with the tenant's shop table replaced (None: removed)."""
    config = yaml.safe_load(pg.config_path.read_text(encoding="utf-8"))
    kasa = config["tenants"][pg.tenant]["smartkasa"]
    if shops is None:
        kasa.pop("shops", None)
    elif shops != "keep":
        kasa["shops"] = shops
    if mappings is not None:
        config["tenants"][pg.tenant]["mappings"] = [str(p) for p in mappings]
    path.write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def _kasa_mapping(folder: Path, *, lookup: str, table: dict[str, int] | None) -> list[Path]:
    """The shipped mappings with the cards' shop lookup renamed (and its file table replaced)."""
    epi, kasa = shipped_mappings()
    spec = yaml.safe_load(kasa.read_text(encoding="utf-8"))
    spec["lookups"].pop("shops")
    if table is not None:
        spec["lookups"][lookup] = table
    spec["entities"]["products"]["children"]["cards"]["fields"]["shop_id"]["lookup"] = lookup
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "smartkasa.yaml"
    path.write_text(yaml.safe_dump(spec, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return [epi, path]


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[Playground]:
    with start_playground(tmp_path / "pg", employees=4, products_epi=2, products_kasa=3) as play:
        yield play


# --- erpsync inspect ---------------------------------------------------------------------


def test_inspect_smartkasa_shops_lists_the_account_ids_with_their_erp_codes(pg: Playground) -> None:
    result = _cli(pg.config_path, "inspect", "smartkasa", "shops", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    account = sorted(str(s["id"]) for s in pg.kasa_state()["shops"])
    assert [r["id"] for r in rows] == account and all(r["title"] for r in rows)
    assert {r["erp_code"]: int(r["id"]) for r in rows} == pg.shops  # as configured

    table = _cli(pg.config_path, "inspect", "smartkasa", "shops")
    assert table.exit_code == 0, table.output
    assert all(sid in table.stdout for sid in account) and "KYIV-01" in table.stdout
    assert "resolves" in table.stdout and "problem" not in table.stdout


def test_inspect_shops_without_a_shop_table_says_how_to_configure_it(pg: Playground, tmp_path: Path) -> None:
    config = _config(pg, tmp_path / "noshops.yaml", shops=None)
    result = _cli(config, "inspect", "smartkasa", "shops")
    assert result.exit_code == 0, result.output
    out = " ".join(result.stdout.split())
    # the shipped mapping's own table (1, 2) is not this account's: said, with the YAML to write
    assert "problem" in out and "are not shops of this SmartKasa account" in out
    assert f"tenants: {pg.tenant}: smartkasa: shops: {{" in out


def test_inspect_smartepi_lists_and_json(pg: Playground) -> None:
    pg.epi_admin(
        "POST", f"/tenants/{pg.tenant}/seed/job-roles", json=[{"name": "Soldador"}, {"name": "Pintor"}]
    )
    rows = json.loads(_cli(pg.config_path, "inspect", "smartepi", "job-roles", "--json").stdout)
    assert sorted(r["name"] for r in rows) == ["Pintor", "Soldador"] and all(r["id"] for r in rows)
    table = _cli(pg.config_path, "inspect", "smartepi", "job_roles")  # the attribute spelling works too
    assert table.exit_code == 0 and "Soldador" in table.stdout and "job-roles" in table.stdout


def test_inspect_unit_types(pg: Playground) -> None:
    rows = json.loads(_cli(pg.config_path, "inspect", "smartkasa", "unit-types", "--json").stdout)
    assert any(r["code"] == 2009 and r["short_name"] == "шт" for r in rows)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("smartkasa", "shop"), "did you mean 'shops'"),
        (("smartepi", "sector"), "did you mean 'sectors'"),
        (("smartkasa", "receipts"), "known lists: shops, unit-types, subgroups"),
    ],
)
def test_inspect_an_unknown_list_is_one_line_with_the_choices(
    pg: Playground, args: tuple[str, ...], expected: str
) -> None:
    result = _cli(pg.config_path, "inspect", *args)
    assert result.exit_code == 1
    assert expected in result.stderr and "Traceback" not in result.output


def test_inspect_a_platform_the_tenant_does_not_configure(pg: Playground, tmp_path: Path) -> None:
    config = yaml.safe_load(pg.config_path.read_text(encoding="utf-8"))
    config["tenants"][pg.tenant].pop("smartepi")
    path = tmp_path / "kasa-only.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    result = _cli(path, "inspect", "smartepi", "sectors")
    assert result.exit_code == 1 and "no smartepi section" in result.stderr


# --- config check ------------------------------------------------------------------------


def test_config_check_fails_when_the_shop_ids_are_not_the_accounts(pg: Playground, tmp_path: Path) -> None:
    assert _cli(pg.config_path, "config", "check", str(pg.config_path)).exit_code == 0

    wrong = _config(pg, tmp_path / "wrong.yaml", shops={"KYIV-01": 1, "LVIV-01": 2})
    result = _cli(wrong, "config", "check", str(wrong))
    assert result.exit_code == 1
    err = " ".join(result.stderr.split())
    assert f"tenants.{pg.tenant}.smartkasa.shops: KYIV-01: 1, LVIV-01: 2 are not shops" in err
    assert "erpsync inspect smartkasa shops" in err and "ok:" not in result.stdout
    # --offline does not ask the account: the table is present, so it passes
    assert _cli(wrong, "config", "check", "--offline", str(wrong)).exit_code == 0


def test_config_check_fails_when_no_shop_id_is_configured_at_all(pg: Playground, tmp_path: Path) -> None:
    maps = _kasa_mapping(tmp_path / "maps", lookup="shops", table={})
    config = _config(pg, tmp_path / "empty.yaml", shops=None, mappings=maps)
    for args in (("config", "check", str(config)), ("config", "check", "--offline", str(config))):
        result = _cli(config, *args)
        assert result.exit_code == 1, result.output
        err = " ".join(result.stderr.split())
        assert "products.cards.shop_id needs SmartKasa shop ids" in err
        assert f"set tenants.{pg.tenant}.smartkasa.shops" in err


def test_config_check_notes_an_unreachable_smartkasa_and_passes(pg: Playground, tmp_path: Path) -> None:
    config = yaml.safe_load(pg.config_path.read_text(encoding="utf-8"))
    config["tenants"][pg.tenant]["smartkasa"]["base_url"] = "http://127.0.0.1:9"  # discard port: refused
    path = tmp_path / "down.yaml"
    path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
    result = _cli(path, "config", "check", str(path))
    assert result.exit_code == 0, result.output
    assert "shop ids were not checked" in " ".join(result.stdout.split())


# --- the shop table whatever the lookup is named ------------------------------------------


def test_the_shop_table_applies_whatever_the_lookup_is_named(pg: Playground, tmp_path: Path) -> None:
    """The mapping calls its lookup ``lojas`` and defines no table: the tenant's shops fill it,
    config check passes and the first apply writes every card under the right shop."""
    maps = _kasa_mapping(tmp_path / "maps", lookup="lojas", table=None)
    config = _config(pg, tmp_path / "lojas.yaml", mappings=maps)
    settings = load_settings(config)
    tenant = settings.tenants[pg.tenant]
    assert [f.lookup for f in shop_fields(tenant.mappings)] == ["lojas"]
    assert tenant_lookups(tenant) == {"lojas": pg.shops, "shops": pg.shops}

    assert _cli(config, "config", "check", str(config)).exit_code == 0
    apply = _cli(config, "apply", "--yes")
    assert apply.exit_code == 0, apply.output
    cards = pg.kasa_state()["cards"]
    assert len(cards) == 6 and {int(c["shop_id"]) for c in cards} == set(pg.shops.values())
    assert _cli(config, "plan").exit_code == 0


# --- the platform's answer -----------------------------------------------------------------


def test_a_rejected_shop_id_says_to_fix_the_shop_configuration() -> None:
    exc = map_status_error(422, {"errors": {"shop_id": [{"error": "invalid"}]}}, method="POST", url="/x")
    text = str(exc)
    assert "fix the shop configuration" in text and "erpsync inspect smartkasa shops" in text
    assert "fix the ERP row" not in text
    other = map_status_error(422, {"errors": {"title": [{"error": "blank"}]}})
    assert "fix the ERP row" in str(other)  # other fields are still the row's


def test_an_apply_with_wrong_shop_ids_points_at_the_shop_config(pg: Playground, tmp_path: Path) -> None:
    wrong = _config(pg, tmp_path / "wrong.yaml", shops={"KYIV-01": 1, "LVIV-01": 2})
    apply = _cli(wrong, "apply", "--yes")
    out = " ".join(apply.output.split())
    assert "shop_id" in out and "fix the shop configuration" in out
    assert "fix the ERP row" not in out
