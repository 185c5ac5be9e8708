"""A Tryton 8.2 demo ERP on SQLite, seeded with the field guide's §4 conventions.

Builds ``<dir>/<database>.sqlite``: two companies (the SmartEPI one in BRL, the SmartKasa one in
UAH, with a chart of accounts, a fiscal year and taxes), party-category roots "Setor", "Cargo",
"Grupo", analytic roots "Centros de Custo" and "Rateio", employees with ``br_cpf`` identifiers,
e-mails and analytic rules, PPE templates with ``tamanho`` variants and ``ca_numero``/``ca_validade``
attributes, the shop category root "Магазин" with products (EAN, gross price, tax group), the
warehouses ``ALM`` (PPE), ``KYIV`` and ``LVIV`` (shops) with stock, per-cost-centre consumption
locations ``CONS-<cost centre code>``, and one POS per shop. One integration user per company:
``epi`` and ``kasa``. A manifest ``<dir>/seed.json`` lists ids, codes and logins.

The modules are activated with ``trytond-admin`` (a subprocess); the data is written in-process
with trytond's own API (a second subprocess, because trytond reads its ``TRYTOND_*`` settings at
import time). Deterministic for a seed and sizes. Not for production use: the passwords are fixed.

    python -m sync.demo.tryton_seed --dir /tmp/erp --size small
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from sync.demo.erpgen import (
    COST_CENTERS,
    FIRST_NAMES,
    GROUPS,
    JOB_ROLES,
    KASA_BRANDS,
    KASA_CATEGORIES,
    KASA_PRODUCTS,
    LAST_NAMES,
    PPE,
    PPE_BRANDS,
    SECTORS,
    _ascii,
    _permute,
    cpf,
    ean13,
)

MODULES = (
    "company",
    "party",
    "product",
    "stock",
    "analytic_account",
    "analytic_sale",
    "sale_point",
    "product_attribute",
)
DATABASE = "erp"
ADMIN_PASSWORD = "erpsync-Admin-2026"  # a local demo database only
USERS = {"epi": ("epi-Secret-2026", 1), "kasa": ("kasa-Secret-2026", 2)}
SIZES: dict[str, tuple[int, int, int]] = {  # employees, PPE templates, shop products
    "tiny": (40, 6, 30),
    "small": (200, 15, 120),
    "bench": (10_000, 100, 2_000),
}
CHUNK = 40  # SQLite's OR-per-row constraint emulation overflows near 90 rows (field guide §7.4)
# Tax groups (SmartKasa ids) → the account category's name and its taxes' rates.
TAX_CATEGORIES = {
    1: ("Податкова група 1: ПДВ 20%", ["0.20"]),
    2: ("Податкова група 2: ПДВ 7%", ["0.07"]),
    4: ("Податкова група 4: без ПДВ", []),
    6: ("Податкова група 6: акциз 5% + ПДВ 20%", ["0.05", "0.20"]),
}
SHOP_TAX_GROUPS = [1, 1, 1, 1, 1, 2, 4, 6]
SHOPS = [("KYIV", "Магазин на Хрещатику"), ("LVIV", "Магазин на Ринку")]
_TODAY = dt.date(2026, 11, 2)


@dataclass(frozen=True)
class SeedSize:
    employees: int
    ppe: int
    shop: int

    @classmethod
    def named(cls, name: str) -> SeedSize:
        if name not in SIZES:
            raise ValueError(f"unknown size {name!r}: use one of {', '.join(SIZES)}")
        return cls(*SIZES[name])


def script_hash() -> str:
    """Changes whenever this script (or the data it borrows) changes: a cache key for built databases."""
    digest = hashlib.sha256()
    for path in (Path(__file__), Path(__file__).with_name("erpgen.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def trytond_env(directory: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["TRYTOND_DATABASE__URI"] = "sqlite://"
    env["TRYTOND_DATABASE__PATH"] = str(directory)
    return env


def write_config(directory: Path, port: int = 8000) -> Path:
    conf = directory / "trytond.conf"
    conf.write_text(
        f"[database]\nuri = sqlite://\npath = {directory}\n[web]\nlisten = 127.0.0.1:{port}\n"
        "[session]\nmax_attempt = 1000\n",
        encoding="utf-8",
    )
    return conf


def _bin(name: str) -> str:
    candidate = Path(sys.executable).with_name(name)
    return str(candidate) if candidate.exists() else name


def activate(directory: Path, database: str, modules: Sequence[str]) -> None:
    """Create (or update) the database with ``trytond-admin`` and activate ``modules``."""
    directory.mkdir(parents=True, exist_ok=True)
    conf = write_config(directory)
    db_file = directory / f"{database}.sqlite"
    fresh = not db_file.exists()
    if fresh:
        db_file.touch()
    pw = directory / ".adminpw"
    pw.write_text(ADMIN_PASSWORD + "\n", encoding="utf-8")
    env = trytond_env(directory)
    env["TRYTONPASSFILE"] = str(pw)
    cmd = [_bin("trytond-admin"), "-c", str(conf), "-d", database]
    if fresh:
        cmd += ["--all", "--email", "admin@example.com"]
    cmd += ["--activate-dependencies", "-u", *modules]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    pw.unlink(missing_ok=True)
    if proc.returncode != 0:
        raise RuntimeError(f"trytond-admin failed ({proc.returncode}): {proc.stderr[-2000:]}")


def build(
    directory: str | Path,
    size: SeedSize | str = "small",
    *,
    database: str = DATABASE,
    seed: int = 42,
    modules: Sequence[str] = (),
) -> dict[str, Any]:
    """Build the seeded database under ``directory``; returns the manifest (also in seed.json)."""
    directory = Path(directory).resolve()
    if isinstance(size, str):
        size = SeedSize.named(size)
    db_file = directory / f"{database}.sqlite"
    if db_file.exists():
        db_file.unlink()
    started = time.monotonic()
    activate(directory, database, [*MODULES, *modules])
    activated = time.monotonic()
    cmd = [
        sys.executable,
        "-m",
        "sync.demo.tryton_seed",
        "--in-process",
        "--dir",
        str(directory),
        "--database",
        database,
        "--employees",
        str(size.employees),
        "--ppe",
        str(size.ppe),
        "--shop",
        str(size.shop),
        "--seed",
        str(seed),
    ]
    proc = subprocess.run(cmd, env=trytond_env(directory), capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"seeding failed ({proc.returncode}): {proc.stderr[-3000:]}")
    manifest: dict[str, Any] = json.loads((directory / "seed.json").read_text(encoding="utf-8"))
    manifest["timings"] = {
        "activate_s": round(activated - started, 2),
        "seed_s": round(time.monotonic() - activated, 2),
    }
    (directory / "seed.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False), encoding="utf-8")
    return manifest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rpc(url: str, method: str, params: list[Any], timeout: float = 10.0) -> Any:
    import httpx

    body = {"id": 1, "method": method, "params": params}
    response = httpx.post(url, json=body, timeout=timeout)
    response.raise_for_status()
    answer = response.json()
    if answer.get("error"):
        raise RuntimeError(f"{method}: {answer['error']!r}")
    return answer.get("result")


class TrytonServer:
    """A ``trytond`` process from this venv on a free loopback port, over ``directory``'s database.

    ``url`` is the JSON-RPC root (``http://127.0.0.1:<port>/``); ``rpc_url`` the database endpoint.
    ``kill()`` is SIGKILL (a crash), ``restart()`` starts it again on the same port and database.
    """

    def __init__(self, directory: str | Path, database: str = DATABASE, *, port: int | None = None) -> None:
        self.directory = Path(directory).resolve()
        self.database = database
        self.port = port or free_port()
        manifest_path = self.directory / "seed.json"
        self.manifest: dict[str, Any] = (
            json.loads(manifest_path.read_text(encoding="utf-8")) if manifest_path.exists() else {}
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.directory / "trytond.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def rpc_url(self) -> str:
        return f"{self.url}{self.database}/rpc/"

    @property
    def db_path(self) -> Path:
        return self.directory / f"{self.database}.sqlite"

    def credentials(self, login: str) -> tuple[str, str]:
        if login == "admin":
            return "admin", ADMIN_PASSWORD
        return login, USERS[login][0]

    def start(self, timeout: float = 90.0) -> TrytonServer:
        conf = write_config(self.directory, self.port)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [_bin("trytond"), "-c", str(conf), "-d", self.database],
            env=trytond_env(self.directory),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
        log.close()
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 90.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                tail = self.log_path.read_text(encoding="utf-8", errors="replace")[-2000:]
                raise RuntimeError(f"trytond exited with {self.proc.returncode}: {tail}")
            try:
                login, password = self.credentials("admin")
                _rpc(self.rpc_url, "common.db.login", [login, {"password": password}, "en"], timeout=10)
                return
            except (httpx.HTTPError, RuntimeError) as exc:
                last = exc
                time.sleep(0.2)
        raise TimeoutError(f"trytond on port {self.port} not ready after {timeout:.0f}s: {last}")

    def kill(self) -> None:
        """SIGKILL: no clean shutdown, as in a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        self.proc = None

    def restart(self, timeout: float = 90.0) -> TrytonServer:
        self.kill()
        return self.start(timeout)

    def __enter__(self) -> TrytonServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------------------------------------
# In-process seeding (runs with TRYTOND_* set before trytond is imported)


def _chunks(rows: Sequence[Any], n: int = CHUNK) -> Iterator[Sequence[Any]]:
    for i in range(0, len(rows), n):
        yield rows[i : i + n]


def _create(model: Any, rows: Sequence[dict[str, Any]]) -> list[Any]:
    out: list[Any] = []
    for chunk in _chunks(rows):
        out.extend(model.create(list(chunk)))
    return out


def _cnpj(base12: str) -> str:
    digits = [int(c) for c in base12]
    for weights in ([5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2], [6, 5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2]):
        rest = sum(d * w for d, w in zip(digits, weights, strict=False)) % 11
        digits.append(0 if rest < 2 else 11 - rest)
    return "".join(map(str, digits))


def _setup_companies(manifest: dict[str, Any]) -> None:
    """Companies, currencies, users, chart of accounts, fiscal year, taxes: proteus in-process."""
    from proteus import Model, Wizard, config
    from trytond.modules.account.tests.tools import create_chart, create_fiscalyear, get_accounts
    from trytond.modules.account_invoice.tests.tools import set_fiscalyear_invoice_sequences

    cfg = config.set_trytond(manifest["database"])
    Currency = Model.get("currency.currency")
    Party = Model.get("party.party")
    User = Model.get("res.user")
    Group = Model.get("res.group")
    companies = {}
    for key, name, code, symbol, ident_type, ident in (
        ("epi", "Metalúrgica Exemplo Ltda", "BRL", "R$", "br_vat", _cnpj("112223330001")),
        ("kasa", "ТОВ «Смачна Крамниця»", "UAH", "₴", "ua_edrpou", "32855961"),
    ):
        currency = Currency(name=code, code=code, symbol=symbol, rounding=Decimal("0.01"), digits=2)
        currency.save()
        party = Party(name=name)
        party.identifiers.new(type=ident_type, code=ident)
        party.save()
        wizard = Wizard("company.company.config")
        wizard.execute("company")
        wizard.form.party = party
        wizard.form.currency = currency
        wizard.execute("add")
        cfg._context = User.get_preferences(True, {})
        companies[key] = cfg._context["company"]
    Company = Model.get("company.company")
    admin = User.find([("login", "=", "admin")])[0]
    for login, (password, company_no) in USERS.items():
        company = Company(companies["epi" if company_no == 1 else "kasa"])
        user = User(name=f"erpsync {login}", login=login, password=password)
        user.companies.append(company)
        user.company = company
        user.groups.extend(Group.find([]))  # proteus: a fetched record joins one list only
        user.save()
    # The shop company's accounting: chart, fiscal year with invoice sequences, taxes, journals.
    kasa = Company(companies["kasa"])
    admin.company = kasa
    admin.save()
    cfg._context = User.get_preferences(True, {})
    create_chart(kasa)
    fiscalyear = set_fiscalyear_invoice_sequences(create_fiscalyear(kasa, today=_TODAY))
    fiscalyear.save()
    fiscalyear.click("create_period")
    accounts = get_accounts(kasa)
    Tax = Model.get("account.tax")
    taxes: dict[str, int] = {}
    for rate in ("0.20", "0.07", "0.05"):
        tax = Tax(
            name={"0.20": "ПДВ 20%", "0.07": "ПДВ 7%", "0.05": "Акциз 5%"}[rate],
            description=f"UA {rate}",
            type="percentage",
            rate=Decimal(rate),
            invoice_account=accounts["tax"],
            credit_note_account=accounts["tax"],
        )
        tax.save()
        taxes[rate] = tax.id
    Category = Model.get("product.category")
    account_categories = {}
    for group, (name, rates) in TAX_CATEGORIES.items():
        cat = Category(name=name, accounting=True)
        cat.account_revenue = accounts["revenue"]
        cat.account_expense = accounts["expense"]
        for rate in rates:
            cat.customer_taxes.append(Tax(taxes[rate]))
        cat.save()
        account_categories[group] = cat.id
    Journal = Model.get("account.journal")
    journal = Journal.find([("type", "=", "revenue")], limit=1)[0]
    Account = Model.get("account.account")
    terminal = Account(accounts["cash"].id).duplicate(default={"name": "Термінал"})[0]
    admin.company = Company(companies["epi"])
    admin.companies.append(kasa)
    admin.save()
    manifest.update(
        companies=companies,
        taxes=taxes,
        account_categories={str(k): v for k, v in account_categories.items()},
        accounts={"cash": accounts["cash"].id, "terminal": terminal.id, "revenue": accounts["revenue"].id},
        journal_revenue=journal.id,
    )


def _seed_data(manifest: dict[str, Any], employees: int, ppe: int, shop: int, seed: int) -> None:
    from trytond.pool import Pool
    from trytond.transaction import Transaction

    database = manifest["database"]
    pool = Pool(database)
    pool.init()
    c_epi, c_kasa = manifest["companies"]["epi"], manifest["companies"]["kasa"]
    with Transaction().start(database, 0, context={"company": c_epi, "language": "en"}) as transaction:
        admin_id = pool.get("res.user").search([("login", "=", "admin")])[0].id
    rng = random.Random(seed)
    with Transaction().start(
        database, admin_id, context={"company": c_epi, "_check_access": False, "language": "en"}
    ) as transaction:
        _org_and_employees(pool, manifest, employees, seed, rng)
        _locations(pool, manifest)
        _ppe(pool, manifest, ppe, seed, rng)
        transaction.commit()
    with Transaction().start(
        database, admin_id, context={"company": c_kasa, "_check_access": False, "language": "en"}
    ) as transaction:
        _shop(pool, manifest, shop, seed, rng)
        _points(pool, manifest)
        transaction.commit()


def _org_and_employees(pool: Any, manifest: dict[str, Any], n: int, seed: int, rng: random.Random) -> None:
    Category = pool.get("party.category")
    Analytic = pool.get("analytic_account.account")
    Party = pool.get("party.party")
    Employee = pool.get("company.employee")
    Rule = pool.get("analytic_account.rule")
    c_epi = manifest["companies"]["epi"]
    roots = {}
    children: dict[str, list[int]] = {}
    for root, names in (
        ("Setor", SECTORS),
        ("Cargo", [name for name, _ in JOB_ROLES]),
        ("Grupo", [name for name, _ in GROUPS]),
    ):
        (r,) = Category.create([{"name": root}])
        roots[root] = r.id
        children[root] = [c.id for c in Category.create([{"name": x, "parent": r.id} for x in names])]
    an_roots = {}
    ccs: dict[str, list[int]] = {}
    cc_codes: dict[int, str] = {}
    for root, code_prefix in (("Centros de Custo", "CC"), ("Rateio", "RT")):
        (r,) = Analytic.create(
            [{"name": root, "code": code_prefix, "type": "root", "company": c_epi, "state": "opened"}]
        )
        an_roots[root] = r.id
        rows = []
        for i, (code, name) in enumerate(COST_CENTERS):
            closed = root == "Centros de Custo" and i == len(COST_CENTERS) - 1
            rows.append(
                {
                    "name": name if code_prefix == "CC" else f"Rateio {name}",
                    "code": f"{code_prefix}-{code}",
                    "type": "normal",
                    "parent": r.id,
                    "root": r.id,
                    "company": c_epi,
                    "state": "closed" if closed else "opened",
                }
            )
        created = Analytic.create(rows)
        ccs[root] = [a.id for a in created]
        cc_codes.update({a.id: row["code"] for a, row in zip(created, rows, strict=True)})
    open_cc = [a for a in ccs["Centros de Custo"] if not cc_codes[a].endswith(COST_CENTERS[-1][0])]

    parties: list[dict[str, Any]] = []
    meta: list[tuple[dt.date, dt.date | None, int, int | None]] = []
    for i in range(n):
        first = FIRST_NAMES[rng.randrange(len(FIRST_NAMES))]
        last = LAST_NAMES[rng.randrange(len(LAST_NAMES))]
        last2 = LAST_NAMES[rng.randrange(len(LAST_NAMES))]
        identifiers = (
            [] if i % 97 == 96 else [{"type": "br_cpf", "code": cpf(_permute(i, 1_000_000_000, seed))}]
        )
        mechanisms = []
        if i % 33 != 7 and identifiers:  # ~3% without e-mail
            mechanisms.append(
                {"type": "email", "value": f"{_ascii(first)}.{_ascii(last2)}.{i}@metalurgica-exemplo.com.br"}
            )
        cats = [
            children["Setor"][rng.randrange(len(SECTORS))],
            children["Cargo"][rng.randrange(len(JOB_ROLES))],
            children["Grupo"][rng.randrange(len(GROUPS))],
        ]
        parties.append(
            {
                "name": f"{first} {last} {last2}",
                "code": f"F{10000 + i}",
                "identifiers": [("create", identifiers)] if identifiers else [],
                "contact_mechanisms": [("create", mechanisms)] if mechanisms else [],
                "categories": [("add", cats)],
            }
        )
        start = _TODAY - dt.timedelta(days=rng.randrange(30, 20 * 365))
        end = _TODAY - dt.timedelta(days=rng.randrange(1, 30)) if i % 25 == 24 else None
        cc = open_cc[rng.randrange(len(open_cc))]
        cc2 = ccs["Rateio"][rng.randrange(len(COST_CENTERS))] if i % 7 == 3 else None
        meta.append((start, end, cc, cc2))
    created = _create(Party, parties)
    _create(
        Employee,
        [
            {"party": p.id, "company": c_epi, "start_date": m[0], "end_date": m[1]}
            for p, m in zip(created, meta, strict=True)
        ],
    )
    rules = []
    for p, (_, _, cc, cc2) in zip(created, meta, strict=True):
        entries = [{"root": an_roots["Centros de Custo"], "account": cc}]
        if cc2 is not None:
            entries.append({"root": an_roots["Rateio"], "account": cc2})
        rules.append({"company": c_epi, "party": p.id, "analytic_accounts": [("create", entries)]})
    _create(Rule, rules)
    manifest.update(
        category_roots=roots,
        analytic_roots=an_roots,
        cost_centers={cc_codes[a]: a for a in ccs["Centros de Custo"]},
        employees=n,
    )


def _warehouse(pool: Any, code: str, name: str, lost_found: int) -> dict[str, int]:
    Location = pool.get("stock.location")
    inp, out, sto = Location.create(
        [
            {"name": f"{name} - entrada", "code": f"{code}-IN", "type": "storage"},
            {"name": f"{name} - saída", "code": f"{code}-OUT", "type": "storage"},
            {"name": f"{name} - estoque", "code": f"{code}-STO", "type": "storage"},
        ]
    )
    (wh,) = Location.create(
        [
            {
                "name": name,
                "code": code,
                "type": "warehouse",
                "input_location": inp.id,
                "output_location": out.id,
                "storage_location": sto.id,
                "lost_found_location": lost_found,
            }
        ]
    )
    Location.write([inp, out, sto], {"parent": wh.id})
    return {"warehouse": wh.id, "storage": sto.id, "input": inp.id, "output": out.id}


def _locations(pool: Any, manifest: dict[str, Any]) -> None:
    Location = pool.get("stock.location")
    (lost_found,) = Location.search([("type", "=", "lost_found")], limit=1)
    (customer,) = Location.search([("code", "=", "CUS")], limit=1)
    warehouses = {"ALM": _warehouse(pool, "ALM", "Almoxarifado Central de EPI", lost_found.id)}
    for code, name in SHOPS:
        warehouses[code] = _warehouse(pool, code, name, lost_found.id)
    Location.write([lost_found], {"code": "LF"})
    (cons_root,) = Location.create([{"name": "Consumo de EPI", "code": "CONS", "type": "lost_found"}])
    codes = sorted(manifest["cost_centers"])
    created = Location.create(
        [
            {"name": f"Consumo {code}", "code": f"CONS-{code}", "type": "lost_found", "parent": cons_root.id}
            for code in codes
        ]
    )
    manifest.update(
        warehouses=warehouses,
        lost_found=lost_found.id,
        customer_location=customer.id,
        consumption={code: loc.id for code, loc in zip(codes, created, strict=True)},
    )


def _uom(pool: Any, symbol: str) -> int:
    (uom,) = pool.get("product.uom").search([("symbol", "=", symbol)], limit=1)
    return int(uom.id)


def _stock_in(pool: Any, rows: list[tuple[int, int, float]], lost_found: int, company: int) -> None:
    """Initial quantities: done moves from lost-and-found (no unit price needed) to storage."""
    Move = pool.get("stock.move")
    Product = pool.get("product.product")
    units = {p.id: p.default_uom.id for p in Product.browse(sorted({r[0] for r in rows}))}
    moves = _create(
        Move,
        [
            {
                "product": product,
                "unit": units[product],
                "quantity": qty,
                "from_location": lost_found,
                "to_location": storage,
                "company": company,
                "planned_date": _TODAY,
                "effective_date": _TODAY,
            }
            for product, storage, qty in rows
            if qty > 0
        ],
    )
    for chunk in _chunks(moves, 200):
        Move.do(list(chunk))


def _ppe(pool: Any, manifest: dict[str, Any], n: int, seed: int, rng: random.Random) -> None:
    Attribute = pool.get("product.attribute")
    AttributeSet = pool.get("product.attribute.set")
    Category = pool.get("product.category")
    Template = pool.get("product.template")
    sizes = sorted({s for _, _, ss in PPE for s in ss})
    attrs = Attribute.create(
        [
            {
                "name": "tamanho",
                "string": "Tamanho",
                "type_": "selection",
                "selection": "\n".join(f"{s}:{s}" for s in sizes),
            },
            {"name": "ca_numero", "string": "Número do CA", "type_": "char"},
            {"name": "ca_validade", "string": "Validade do CA", "type_": "date"},
        ]
    )
    (attr_set,) = AttributeSet.create([{"name": "EPI", "attributes": [("add", [a.id for a in attrs])]}])
    (epi_root,) = Category.create([{"name": "EPI", "code": "EPI"}])
    unit = _uom(pool, "u")
    templates = []
    for i in range(n):
        base, _unit, size_list = PPE[i % len(PPE)]
        brand = PPE_BRANDS[rng.randrange(len(PPE_BRANDS))]
        ca = f"{_permute(i, 1_000_000, seed):06d}"
        expires = _TODAY + dt.timedelta(days=rng.randrange(-60, 5 * 365))
        variants = []
        for k, size in enumerate(size_list):
            variant: dict[str, Any] = {
                "suffix_code": None if size == "Único" else f"-{size}",
                "attributes": {"tamanho": size, "ca_numero": ca, "ca_validade": expires},
            }
            if (i + k) % 9 != 4:
                body = f"789{_permute(i * 8 + k, 1_000_000_000, seed):09d}"
                variant["identifiers"] = [("create", [{"type": "ean", "code": ean13(body)}])]
            variants.append(variant)
        templates.append(
            {
                "name": f"{base} {brand} Mod. {1000 + i}",
                "code": f"EPI-{i + 1:04d}",
                "type": "goods",
                "default_uom": unit,
                "list_price": Decimal(rng.randrange(500, 25_000)) / 100,
                "categories": [("add", [epi_root.id])],
                "attribute_set": attr_set.id,
                "active": i % 29 != 28,
                "products": [("create", variants)],
            }
        )
    created = []
    for chunk in _chunks(templates, 8):  # ≤ 40 variants per call
        created.extend(Template.create(list(chunk)))
    storage = manifest["warehouses"]["ALM"]["storage"]
    stock = [(p.id, storage, float(rng.randrange(20, 400))) for t in created if t.active for p in t.products]
    _stock_in(pool, stock, manifest["lost_found"], manifest["companies"]["epi"])
    manifest.update(ppe_root=epi_root.id, ppe_templates=n, attribute_set=attr_set.id)


def _shop(pool: Any, manifest: dict[str, Any], n: int, seed: int, rng: random.Random) -> None:
    Category = pool.get("product.category")
    Template = pool.get("product.template")
    (root,) = Category.create([{"name": "Магазин", "code": "SHOP"}])
    subs: dict[str, int] = {}
    for p, (parent, names) in enumerate(KASA_CATEGORIES.items(), start=1):
        (cat,) = Category.create([{"name": parent, "code": f"K{p:02d}", "parent": root.id}])
        for s, name in enumerate(names, start=1):
            (child,) = Category.create([{"name": name, "code": f"K{p:02d}-{s:02d}", "parent": cat.id}])
            subs[name] = child.id
    catalog = [(sub, item) for sub, items in KASA_PRODUCTS.items() for item in items]
    u, kg = _uom(pool, "u"), _uom(pool, "kg")
    acc_cats = {int(k): v for k, v in manifest["account_categories"].items()}
    templates = []
    for i in range(n):
        sub, (name, _unit, weighted, price) = catalog[i % len(catalog)]
        brand = KASA_BRANDS[rng.randrange(len(KASA_BRANDS))]
        gross = (Decimal(price) * Decimal(80 + rng.randrange(0, 41)) / 100).quantize(Decimal("0.01"))
        group = SHOP_TAX_GROUPS[rng.randrange(len(SHOP_TAX_GROUPS))]
        factor = Decimal(1)
        for rate in TAX_CATEGORIES[group][1]:
            factor += Decimal(rate)
        identifiers = []
        if not (weighted and i % 2):
            body = f"482{_permute(i, 1_000_000_000, seed):09d}"
            identifiers = [("create", [{"type": "ean", "code": ean13(body)}])]
        uom = kg if weighted else u
        templates.append(
            {
                "name": f"{name} «{brand}»" if not weighted else f"{name} ({brand})",
                "type": "goods",
                "default_uom": uom,
                "sale_uom": uom,
                "salable": True,
                "account_category": acc_cats[group],
                "categories": [("add", [subs[sub]])],
                "list_price": (gross / factor).quantize(Decimal("0.0001")),
                "gross_price": gross,
                "products": [
                    (
                        "create",
                        [
                            {
                                "suffix_code": f"UA-{i + 1:05d}",
                                "identifiers": identifiers,
                                "cost_price": (gross * Decimal("0.72")).quantize(Decimal("0.0001")),
                            }
                        ],
                    )
                ],
            }
        )
    created = _create(Template, templates)
    stock = []
    for t in created:
        weighted = t.default_uom.id == kg
        for code, _ in SHOPS:
            storage = manifest["warehouses"][code]["storage"]
            qty = rng.randrange(0, 5000) / 100 if weighted else float(rng.randrange(0, 200))
            stock.append((t.products[0].id, storage, qty))
    _stock_in(pool, stock, manifest["lost_found"], manifest["companies"]["kasa"])
    manifest.update(shop_root=root.id, shop_products=n)


def _points(pool: Any, manifest: dict[str, Any]) -> None:
    POS = pool.get("sale.point")
    Method = pool.get("sale.point.payment.method")
    Sequence_ = pool.get("ir.sequence.strict")
    SequenceType = pool.get("ir.sequence.type")
    c_kasa = manifest["companies"]["kasa"]
    (seq_type,) = SequenceType.search([("name", "=", "POS")], limit=1)
    points = {}
    for code, _name in SHOPS:
        (seq,) = Sequence_.create(
            [{"name": f"Каса {code}", "sequence_type": seq_type.id, "company": c_kasa, "prefix": f"{code}-"}]
        )
        (point,) = POS.create(
            [
                {
                    "name": f"Каса {code}",
                    "company": c_kasa,
                    "journal": manifest["journal_revenue"],
                    "sequence": seq.id,
                    "storage_location": manifest["warehouses"][code]["storage"],
                    "customer_location": manifest["customer_location"],
                    "return_location": manifest["warehouses"][code]["storage"],
                }
            ]
        )
        points[code] = point.id
    card, cash = Method.create(
        [
            {"name": "Картка", "company": c_kasa, "account": manifest["accounts"]["terminal"], "cash": False},
            {"name": "Готівка", "company": c_kasa, "account": manifest["accounts"]["cash"], "cash": True},
        ]
    )
    manifest.update(points=points, payment_methods={"card": card.id, "cash": cash.id})


def seed_in_process(directory: Path, database: str, employees: int, ppe: int, shop: int, seed: int) -> None:
    manifest: dict[str, Any] = {
        "database": database,
        "db_path": str(directory / f"{database}.sqlite"),
        "admin": {"login": "admin", "password": ADMIN_PASSWORD},
        "users": {login: {"password": pw} for login, (pw, _) in USERS.items()},
        "script_hash": script_hash(),
        "today": _TODAY.isoformat(),
    }
    _setup_companies(manifest)
    for login, (_, no) in USERS.items():
        manifest["users"][login]["company"] = manifest["companies"]["epi" if no == 1 else "kasa"]
    _seed_data(manifest, employees, ppe, shop, seed)
    (directory / "seed.json").write_text(json.dumps(manifest, indent=1, ensure_ascii=False), encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--dir", required=True, type=Path)
    parser.add_argument("--database", default=DATABASE)
    parser.add_argument("--size", default="small", choices=sorted(SIZES))
    parser.add_argument("--employees", type=int)
    parser.add_argument("--ppe", type=int)
    parser.add_argument("--shop", type=int)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--module", action="append", default=[], help="extra Tryton module to activate")
    parser.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    base = SeedSize.named(args.size)
    size = SeedSize(
        args.employees if args.employees is not None else base.employees,
        args.ppe if args.ppe is not None else base.ppe,
        args.shop if args.shop is not None else base.shop,
    )
    if args.in_process:
        seed_in_process(args.dir.resolve(), args.database, size.employees, size.ppe, size.shop, args.seed)
        return 0
    manifest = build(args.dir, size, database=args.database, seed=args.seed, modules=args.module)
    print(json.dumps({"db_path": manifest["db_path"], "timings": manifest["timings"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
