"""The demo ERP: deterministic, valid data, and it maps cleanly through the demo mapping files."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import yaml

from sync.core.mapping import load_mappings
from sync.demo.erpgen import cpf, cpf_valid, ean13, ean13_valid, generate, main
from sync.sources import SqlSourceConfig, open_source

REPO = Path(__file__).resolve().parents[2]


def dump(path: Path) -> dict[str, list[tuple[object, ...]]]:
    conn = sqlite3.connect(path)
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table' ORDER BY name")]
    out = {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in tables}
    conn.close()
    return out


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("demo") / "demo.db"
    generate(path, employees=400, products_epi=40, products_kasa=150, seed=42)
    return path


def test_check_digits() -> None:
    assert cpf(111444777) == "111.444.777-35"  # a well-known valid example
    assert cpf_valid("111.444.777-35") and not cpf_valid("111.444.777-36")
    assert ean13("400638133393") == "4006381333931"
    assert ean13_valid("4006381333931") and not ean13_valid("4006381333932")


def test_deterministic_per_seed(demo: Path, tmp_path: Path) -> None:
    again = generate(
        f"sqlite:///{tmp_path}/again.db", employees=400, products_epi=40, products_kasa=150, seed=42
    )
    other = generate(tmp_path / "other.db", employees=400, products_epi=40, products_kasa=150, seed=7)
    assert dump(demo) == dump(again)
    assert dump(demo)["funcionarios"] != dump(other)["funcionarios"]


def test_data_is_realistic_and_valid(demo: Path) -> None:
    data = dump(demo)
    conn = sqlite3.connect(demo)
    for table in data:
        columns = [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]
        assert table == "kasa_shops" or "updated_at" in columns
    employees = data["funcionarios"]
    assert len(employees) == 400
    cpfs = [e[2] for e in employees if e[2]]
    assert len(cpfs) == len(set(cpfs)) > 380 and all(cpf_valid(c) for c in cpfs)
    assert any(e[2] is None and e[3] is None for e in employees)  # some need a derived identification
    assert {"Soldagem", "Manutenção"} <= {s[1] for s in data["setores"]}
    barcodes = [p[1] for p in data["kasa_products"]]
    assert len(set(barcodes)) == 150 and all(ean13_valid(b) for b in barcodes)
    parents = {c[0]: c[2] for c in data["kasa_categories"]}
    assert all(parents[p] is None for p in parents.values() if p is not None)  # two levels
    stock = conn.execute("SELECT sku, COUNT(DISTINCT shop_code) FROM kasa_stock GROUP BY sku").fetchall()
    assert len(stock) == 150 and {n for _, n in stock} == {2}
    assert conn.execute("SELECT COUNT(*) FROM epi_certificados").fetchone()[0] >= 40
    conn.close()


def test_demo_maps_cleanly_through_the_demo_mappings(demo: Path) -> None:
    mappings = load_mappings([REPO / "mappings/smartepi.yaml", REPO / "mappings/smartkasa.yaml"])
    src = open_source(SqlSourceConfig(url=f"sqlite:///{demo}"))
    try:
        for platform in mappings.platforms:
            results = mappings.map_all(platform, src.read)
            for entity, result in results.items():
                assert result.quarantine == [], (platform, entity, result.quarantine[:3])
                assert result.desired, (platform, entity)
        employees = mappings.map_all("smartepi", src.read)["employees"].desired
        assert sum(d.fields["identification"].startswith("ERP-") for d in employees) >= 3
    finally:
        src.close()


def test_example_config_points_at_the_demo_mappings() -> None:
    config = yaml.safe_load((REPO / "examples/demo-config.yaml").read_text(encoding="utf-8"))
    tenant = config["tenants"]["demo"]
    assert tenant["erp"]["kind"] == "sql"
    # Relative mapping paths resolve against the config file's folder (sync.settings).
    assert all((REPO / "examples" / m).resolve().exists() for m in tenant["mappings"])


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli.db"
    assert main(["--out", str(out), "--size", "50", "--seed", "1", "--products-epi", "5"]) == 0
    data = dump(out)
    assert (len(data["funcionarios"]), len(data["epi_produtos"]), len(data["kasa_products"])) == (50, 5, 50)
    assert "cli.db" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--size", "huge"])
