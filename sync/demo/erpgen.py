"""Deterministic demo ERP: a SQLite database a tenant can sync from.

Brazilian org data and PPE catalogue for SmartEPI, a Ukrainian shop catalogue with
stock in two shops for SmartKasa. The same seed and sizes always give the same rows
(``updated_at`` included), so tests, demos and benchmarks are reproducible. Rows are
written with ``executemany`` in chunks: a million employees take seconds.

    python -m sync.demo.erpgen --out demo.db --size small --seed 42
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import sqlite3
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

CHUNK = 20_000
_STOCK_SQL = "INSERT INTO kasa_stock (sku, shop_code, qty, track, updated_at) VALUES (?, ?, ?, ?, ?)"
SIZES = {"small": (300, 60, 200), "medium": (5_000, 500, 5_000)}
_EPOCH = dt.datetime(2024, 1, 1, 8, 0, 0)

SCHEMA = """
CREATE TABLE setores (codigo TEXT PRIMARY KEY, nome TEXT NOT NULL, ativo INTEGER NOT NULL,
    updated_at TEXT NOT NULL);
CREATE TABLE centros_custo (codigo TEXT PRIMARY KEY, nome TEXT NOT NULL, ativo INTEGER NOT NULL,
    updated_at TEXT NOT NULL);
CREATE TABLE cargos (codigo TEXT PRIMARY KEY, nome TEXT NOT NULL, descricao TEXT, updated_at TEXT NOT NULL);
CREATE TABLE grupos (codigo TEXT PRIMARY KEY, nome TEXT NOT NULL, descricao TEXT, updated_at TEXT NOT NULL);
CREATE TABLE funcionarios (
    matricula TEXT PRIMARY KEY, nome TEXT NOT NULL, cpf TEXT, email TEXT, setor TEXT, centro_custo TEXT,
    centro_custo_2 TEXT, cargo TEXT, grupo TEXT, data_admissao TEXT, situacao TEXT NOT NULL,
    updated_at TEXT NOT NULL);
CREATE TABLE epi_produtos (codigo TEXT PRIMARY KEY, nome TEXT NOT NULL, descricao TEXT, unidade TEXT,
    ativo INTEGER NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE epi_tamanhos (id INTEGER PRIMARY KEY, produto TEXT NOT NULL, tamanho TEXT NOT NULL,
    updated_at TEXT NOT NULL);
CREATE TABLE epi_certificados (id INTEGER PRIMARY KEY, produto TEXT NOT NULL, numero_ca TEXT NOT NULL,
    validade TEXT, updated_at TEXT NOT NULL);
CREATE TABLE kasa_shops (code TEXT PRIMARY KEY, title TEXT NOT NULL, city TEXT NOT NULL);
CREATE TABLE kasa_categories (code TEXT PRIMARY KEY, title TEXT NOT NULL, parent_code TEXT,
    updated_at TEXT NOT NULL);
CREATE TABLE kasa_products (sku TEXT PRIMARY KEY, barcode TEXT, title TEXT NOT NULL, short_title TEXT,
    category_code TEXT, price TEXT NOT NULL, cost_price TEXT, tax_group INTEGER NOT NULL, unit TEXT NOT NULL,
    weighted INTEGER NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE kasa_stock (id INTEGER PRIMARY KEY, sku TEXT NOT NULL, shop_code TEXT NOT NULL,
    qty TEXT NOT NULL, track INTEGER NOT NULL, updated_at TEXT NOT NULL);
CREATE INDEX ix_funcionarios_updated ON funcionarios (updated_at);
CREATE INDEX ix_kasa_products_updated ON kasa_products (updated_at);
CREATE INDEX ix_epi_tamanhos_produto ON epi_tamanhos (produto);
CREATE INDEX ix_epi_certificados_produto ON epi_certificados (produto);
CREATE INDEX ix_kasa_stock_sku ON kasa_stock (sku);
"""

SECTORS = [
    "Soldagem",
    "Manutenção",
    "Almoxarifado",
    "Pintura",
    "Montagem",
    "Usinagem",
    "Caldeiraria",
    "Expedição",
    "Qualidade",
    "Segurança do Trabalho",
    "Logística",
    "Produção",
    "Elétrica",
    "Ferramentaria",
    "Administrativo",
]
COST_CENTERS = [
    ("1001", "Produção Linha 1"),
    ("1002", "Produção Linha 2"),
    ("1003", "Produção Linha 3"),
    ("2001", "Manutenção Mecânica"),
    ("2002", "Manutenção Elétrica"),
    ("3001", "Logística Interna"),
    ("3002", "Expedição e Transporte"),
    ("4001", "Qualidade e Laboratório"),
    ("5001", "SESMT"),
    ("9001", "Administração Geral"),
]
JOB_ROLES = [
    ("Soldador", "Solda MIG/MAG e eletrodo revestido"),
    ("Mecânico de Manutenção", "Manutenção preventiva"),
    ("Eletricista Industrial", "NR-10"),
    ("Almoxarife", "Recebimento e guarda de materiais"),
    ("Pintor Industrial", "Pintura a pistola"),
    ("Montador", "Montagem de estruturas"),
    ("Torneiro Mecânico", "Torno convencional e CNC"),
    ("Técnico de Segurança", "Inspeções e treinamentos"),
    ("Operador de Empilhadeira", "NR-11"),
    ("Inspetor de Qualidade", "Ensaios dimensionais"),
    ("Auxiliar de Produção", None),
    ("Supervisor de Produção", "Gestão de turno"),
]
GROUPS = [
    ("Turno A", "06h às 14h"),
    ("Turno B", "14h às 22h"),
    ("Turno C", "22h às 06h"),
    ("Administrativo", "Horário comercial"),
    ("Terceiros", "Prestadores de serviço"),
]
FIRST_NAMES = [
    "Ana",
    "Maria",
    "João",
    "José",
    "Francisco",
    "Antônio",
    "Carlos",
    "Paulo",
    "Pedro",
    "Lucas",
    "Luiz",
    "Marcos",
    "Luís",
    "Gabriel",
    "Rafael",
    "Daniel",
    "Marcelo",
    "Bruno",
    "Eduardo",
    "Felipe",
    "Juliana",
    "Fernanda",
    "Patrícia",
    "Aline",
    "Camila",
    "Amanda",
    "Bruna",
    "Jéssica",
    "Letícia",
    "Júlia",
    "Luciana",
    "Vanessa",
    "Mariana",
    "Gabriela",
    "Vitória",
    "Larissa",
    "Beatriz",
    "Rodrigo",
    "Thiago",
    "Diego",
]
LAST_NAMES = [
    "Silva",
    "Santos",
    "Oliveira",
    "Souza",
    "Rodrigues",
    "Ferreira",
    "Alves",
    "Pereira",
    "Lima",
    "Gomes",
    "Costa",
    "Ribeiro",
    "Martins",
    "Carvalho",
    "Almeida",
    "Lopes",
    "Soares",
    "Fernandes",
    "Vieira",
    "Barbosa",
    "Rocha",
    "Dias",
    "Nascimento",
    "Andrade",
    "Moreira",
    "Nunes",
    "Marques",
    "Machado",
    "Mendes",
    "Freitas",
    "Cardoso",
    "Ramos",
    "Gonçalves",
    "Santana",
    "Teixeira",
    "Araújo",
    "Pinto",
    "Correia",
    "Cavalcanti",
]
PPE = [  # base name, unit, sizes
    ("Luva de Vaqueta", "PAR", ["P", "M", "G", "GG"]),
    ("Luva Nitrílica", "PAR", ["P", "M", "G"]),
    ("Capacete de Segurança Classe B", "UN", ["Único"]),
    ("Óculos de Proteção Incolor", "UN", ["Único"]),
    ("Protetor Auricular Tipo Plug", "PAR", ["Único"]),
    ("Bota de Segurança com Biqueira", "PAR", ["36", "38", "40", "42", "44"]),
    ("Respirador PFF2", "UN", ["Único"]),
    ("Avental de Raspa", "UN", ["Único"]),
    ("Máscara de Solda Automática", "UN", ["Único"]),
    ("Cinto de Segurança Paraquedista", "UN", ["M", "G"]),
    ("Respirador Semifacial", "UN", ["P", "M", "G"]),
    ("Protetor Facial Incolor", "UN", ["Único"]),
    ("Creme de Proteção Grupo 2", "CX", ["Único"]),
    ("Mangote de Raspa", "PAR", ["Único"]),
    ("Perneira de Segurança", "PAR", ["Único"]),
]
PPE_BRANDS = ["Volk", "Danny", "3M", "Marluvas", "Kalipso", "MSA", "Delta Plus", "Ansell", "Bracol"]

KASA_SHOPS = [("KYIV-01", "Магазин на Хрещатику", "Київ"), ("LVIV-01", "Магазин на Ринку", "Львів")]
KASA_CATEGORIES = {
    "Молочні продукти": ["Молоко", "Сир", "Йогурти"],
    "Хлібобулочні вироби": ["Хліб", "Випічка"],
    "Напої": ["Соки", "Вода мінеральна", "Газовані напої"],
    "Бакалія": ["Крупи", "Макарони", "Олія"],
    "Овочі та фрукти": ["Овочі", "Фрукти"],
    "Побутова хімія": ["Пральні засоби", "Засоби для посуду"],
}
KASA_PRODUCTS = {  # subcategory: [(name, unit, weighted, base price)]
    "Молоко": [("Молоко 2,5% 900 г", "шт", 0, "38.90"), ("Кефір 1% 900 г", "шт", 0, "41.50")],
    "Сир": [("Сир твердий Голландський", "кг", 1, "389.00"), ("Сир кисломолочний 5%", "шт", 0, "72.40")],
    "Йогурти": [("Йогурт полуниця 270 г", "шт", 0, "35.20")],
    "Хліб": [("Хліб Український 950 г", "шт", 0, "32.00"), ("Батон нарізний 500 г", "шт", 0, "26.80")],
    "Випічка": [("Круасан з шоколадом", "шт", 0, "24.90")],
    "Соки": [("Сік яблучний 1 л", "пляшка", 0, "54.30"), ("Сік томатний 1 л", "пляшка", 0, "49.90")],
    "Вода мінеральна": [("Вода Моршинська 1,5 л", "пляшка", 0, "27.60")],
    "Газовані напої": [("Лимонад Дюшес 2 л", "пляшка", 0, "36.70")],
    "Крупи": [("Гречка 1 кг", "шт", 0, "62.10"), ("Рис круглозерний 1 кг", "шт", 0, "58.40")],
    "Макарони": [("Макарони спагеті 400 г", "шт", 0, "31.90")],
    "Олія": [("Олія соняшникова 850 мл", "пляшка", 0, "67.80")],
    "Овочі": [("Картопля", "кг", 1, "18.50"), ("Цибуля ріпчаста", "кг", 1, "16.90")],
    "Фрукти": [("Яблука Голден", "кг", 1, "42.00"), ("Банани", "кг", 1, "64.90")],
    "Пральні засоби": [("Пральний порошок 3 кг", "шт", 0, "289.00")],
    "Засоби для посуду": [("Засіб для миття посуду 500 мл", "шт", 0, "45.60")],
}
KASA_BRANDS = ["Галичина", "Яготинське", "Київхліб", "Сандора", "Моршинська", "Олейна", "Жменька", "Рошен"]
TAX_GROUPS = [1, 1, 1, 1, 4]  # mostly VAT 20%, some without VAT (smartkasa.md §7.1)


def cpf(base: int) -> str:
    """A CPF with valid check digits, formatted ``000.000.000-00``."""
    digits = [int(c) for c in f"{base:09d}"]
    for n in (10, 11):
        total = sum(d * w for d, w in zip(digits, range(n, 1, -1), strict=False))
        rest = total * 10 % 11
        digits.append(0 if rest == 10 else rest)
    s = "".join(map(str, digits))
    return f"{s[:3]}.{s[3:6]}.{s[6:9]}-{s[9:]}"


def cpf_valid(value: str) -> bool:
    digits = "".join(c for c in value if c.isdigit())
    return len(digits) == 11 and cpf(int(digits[:9])).replace(".", "").replace("-", "") == digits


def ean13(body12: str) -> str:
    """Append the EAN-13 check digit to 12 digits."""
    total = sum(int(c) * (3 if i % 2 else 1) for i, c in enumerate(body12))
    return body12 + str((10 - total % 10) % 10)


def ean13_valid(code: str) -> bool:
    return len(code) == 13 and code.isdigit() and ean13(code[:12]) == code


def _permute(i: int, modulus: int, seed: int) -> int:
    """A bijection on ``range(modulus)`` (modulus a power of ten): unique, scattered values."""
    a = 7_654_321 if seed % 2 else 9_876_543  # both coprime with 10
    return (i * a + seed * 1_000_003) % modulus


def _stamp(rng: random.Random) -> str:
    return (_EPOCH + dt.timedelta(seconds=rng.randrange(0, 180 * 86_400))).isoformat(sep=" ")


def _insert(
    conn: sqlite3.Connection, table: str, columns: Sequence[str], rows: Iterator[tuple[Any, ...]]
) -> int:
    sql = f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
    count = 0
    chunk: list[tuple[Any, ...]] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= CHUNK:
            conn.executemany(sql, chunk)
            count += len(chunk)
            chunk = []
    if chunk:
        conn.executemany(sql, chunk)
        count += len(chunk)
    return count


def _employees(n: int, seed: int) -> Iterator[tuple[Any, ...]]:
    rng = random.Random(seed * 31 + 1)
    n_cc = len(COST_CENTERS)
    for i in range(n):
        first = FIRST_NAMES[rng.randrange(len(FIRST_NAMES))]
        last = LAST_NAMES[rng.randrange(len(LAST_NAMES))]
        last2 = LAST_NAMES[rng.randrange(len(LAST_NAMES))]
        unkeyed = i % 97 == 96  # ~1%: neither CPF nor e-mail (identification is derived)
        ident = None if unkeyed else cpf(_permute(i, 1_000_000_000, seed))
        email = None
        if not unkeyed and i % 10 != 3:
            email = f"{_ascii(first)}.{_ascii(last2)}.{i}@metalurgica-exemplo.com.br"
        admission = _EPOCH.date() - dt.timedelta(days=rng.randrange(30, 30 * 365))
        yield (
            f"{i + 1:07d}",
            f"{first} {last} {last2}",
            ident,
            email,
            f"S{rng.randrange(len(SECTORS)) + 1:02d}",
            COST_CENTERS[rng.randrange(n_cc)][0],
            COST_CENTERS[rng.randrange(n_cc)][0] if i % 5 == 0 else None,
            f"C{rng.randrange(len(JOB_ROLES)) + 1:02d}",
            f"G{rng.randrange(len(GROUPS)) + 1}",
            admission.strftime("%d/%m/%Y"),
            "D" if i % 23 == 0 else ("F" if i % 41 == 0 else "A"),
            _stamp(rng),
        )


_ASCII = str.maketrans("áàâãéêíóôõúüçÁÀÂÃÉÊÍÓÔÕÚÜÇ", "aaaaeeiooouucAAAAEEIOOOUUC")


def _ascii(name: str) -> str:
    return name.translate(_ASCII).lower()


def _epi_products(
    n: int, seed: int
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    rng = random.Random(seed * 31 + 2)
    products: list[tuple[Any, ...]] = []
    sizes: list[tuple[Any, ...]] = []
    certs: list[tuple[Any, ...]] = []
    for i in range(n):
        base, unit, size_list = PPE[i % len(PPE)]
        brand = PPE_BRANDS[rng.randrange(len(PPE_BRANDS))]
        code = f"EPI-{i + 1:05d}"
        stamp = _stamp(rng)
        products.append(
            (
                code,
                f"{base} {brand} Mod. {1000 + i}",
                f"{base} marca {brand}",
                unit,
                0 if i % 29 == 28 else 1,
                stamp,
            )
        )
        for size in size_list:
            sizes.append((len(sizes) + 1, code, size, stamp))
        for k in range(1 + (i % 3 == 0)):
            expires = _EPOCH.date() + dt.timedelta(days=rng.randrange(-60, 5 * 365))
            ca = f"{_permute(i * 2 + k, 1_000_000, seed):06d}"
            certs.append((len(certs) + 1, code, ca, expires.isoformat(), stamp))
    return products, sizes, certs


def _kasa_categories() -> list[tuple[Any, ...]]:
    rows: list[tuple[Any, ...]] = []
    stamp = _EPOCH.isoformat(sep=" ")
    for p, (parent, subs) in enumerate(KASA_CATEGORIES.items(), start=1):
        rows.append((f"K{p:02d}", parent, None, stamp))
        for s, sub in enumerate(subs, start=1):
            rows.append((f"K{p:02d}-{s:02d}", sub, f"K{p:02d}", stamp))
    return rows


def _kasa_products(n: int, seed: int) -> Iterator[tuple[tuple[Any, ...], list[tuple[Any, ...]]]]:
    from decimal import Decimal

    rng = random.Random(seed * 31 + 3)
    codes = {title: code for code, title, parent, _ in _kasa_categories() if parent is not None}
    catalog = [(sub, item) for sub, items in KASA_PRODUCTS.items() for item in items]
    for i in range(n):
        sub, (name, unit, weighted, price) = catalog[i % len(catalog)]
        brand = KASA_BRANDS[rng.randrange(len(KASA_BRANDS))]
        sku = f"SKU-{i + 1:07d}"
        barcode = ean13(f"482{_permute(i, 1_000_000_000, seed):09d}")
        factor = Decimal(80 + rng.randrange(0, 41)) / 100
        retail = (Decimal(price) * factor).quantize(Decimal("0.01"))
        cost = (retail * Decimal("0.72")).quantize(Decimal("0.01"))
        stamp = _stamp(rng)
        product = (
            sku,
            barcode,
            f"{name} «{brand}»" if not weighted else name + f" ({brand})",
            name[:20],
            codes[sub],
            str(retail),
            str(cost),
            TAX_GROUPS[rng.randrange(len(TAX_GROUPS))],
            unit,
            weighted,
            stamp,
        )
        stock = []
        for shop, _, _ in KASA_SHOPS:
            qty = Decimal(rng.randrange(0, 50_000)) / 1000 if weighted else Decimal(rng.randrange(0, 200))
            stock.append((sku, shop, str(qty), 1 if i % 17 else 0, stamp))
        yield product, stock


def generate(
    url_or_path: str | Path,
    *,
    employees: int,
    products_epi: int,
    products_kasa: int,
    seed: int = 42,
) -> Path:
    """Create (or replace) the demo ERP database; returns its path.

    Accepts a file path or a ``sqlite:///path`` URL.
    """
    path = Path(str(url_or_path).removeprefix("sqlite:///"))
    if path.exists():
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA journal_mode=OFF")
        conn.execute("PRAGMA synchronous=OFF")
        conn.executescript(SCHEMA)
        rng = random.Random(seed)
        _insert(
            conn,
            "setores",
            ("codigo", "nome", "ativo", "updated_at"),
            ((f"S{i + 1:02d}", name, 1, _stamp(rng)) for i, name in enumerate(SECTORS)),
        )
        _insert(
            conn,
            "centros_custo",
            ("codigo", "nome", "ativo", "updated_at"),
            ((code, name, 1, _stamp(rng)) for code, name in COST_CENTERS),
        )
        _insert(
            conn,
            "cargos",
            ("codigo", "nome", "descricao", "updated_at"),
            ((f"C{i + 1:02d}", name, desc, _stamp(rng)) for i, (name, desc) in enumerate(JOB_ROLES)),
        )
        _insert(
            conn,
            "grupos",
            ("codigo", "nome", "descricao", "updated_at"),
            ((f"G{i + 1}", name, desc, _stamp(rng)) for i, (name, desc) in enumerate(GROUPS)),
        )
        _insert(
            conn,
            "funcionarios",
            (
                "matricula",
                "nome",
                "cpf",
                "email",
                "setor",
                "centro_custo",
                "centro_custo_2",
                "cargo",
                "grupo",
                "data_admissao",
                "situacao",
                "updated_at",
            ),
            _employees(employees, seed),
        )
        products, sizes, certs = _epi_products(products_epi, seed)
        _insert(
            conn,
            "epi_produtos",
            ("codigo", "nome", "descricao", "unidade", "ativo", "updated_at"),
            iter(products),
        )
        _insert(conn, "epi_tamanhos", ("id", "produto", "tamanho", "updated_at"), iter(sizes))
        _insert(
            conn, "epi_certificados", ("id", "produto", "numero_ca", "validade", "updated_at"), iter(certs)
        )
        _insert(conn, "kasa_shops", ("code", "title", "city"), iter(KASA_SHOPS))
        _insert(
            conn, "kasa_categories", ("code", "title", "parent_code", "updated_at"), iter(_kasa_categories())
        )
        stock: list[tuple[Any, ...]] = []

        def products_then_stock() -> Iterator[tuple[Any, ...]]:
            for product, cards in _kasa_products(products_kasa, seed):
                stock.extend(cards)
                yield product
                if len(stock) >= CHUNK:
                    conn.executemany(
                        _STOCK_SQL,
                        stock,
                    )
                    stock.clear()

        _insert(
            conn,
            "kasa_products",
            (
                "sku",
                "barcode",
                "title",
                "short_title",
                "category_code",
                "price",
                "cost_price",
                "tax_group",
                "unit",
                "weighted",
                "updated_at",
            ),
            products_then_stock(),
        )
        if stock:
            conn.executemany(
                _STOCK_SQL,
                stock,
            )
        conn.commit()
    finally:
        conn.close()
    return path


def _size(value: str) -> tuple[int, int, int]:
    if value in SIZES:
        return SIZES[value]
    n = int(value)
    if not 1 <= n <= 1_000_000:
        raise argparse.ArgumentTypeError("size must be small, medium or 1..1000000")
    return n, max(10, n // 10), n


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sync.demo.erpgen", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="demo.db", help="SQLite file to create (replaced if present)")
    parser.add_argument(
        "--size", default="small", type=_size, help="small | medium | N employees (and N products)"
    )
    parser.add_argument("--seed", default=42, type=int)
    parser.add_argument("--employees", type=int, help="override the employee count")
    parser.add_argument("--products-epi", type=int, help="override the SmartEPI product count")
    parser.add_argument("--products-kasa", type=int, help="override the SmartKasa product count")
    args = parser.parse_args(argv)
    employees, products_epi, products_kasa = args.size
    path = generate(
        args.out,
        employees=args.employees if args.employees is not None else employees,
        products_epi=args.products_epi if args.products_epi is not None else products_epi,
        products_kasa=args.products_kasa if args.products_kasa is not None else products_kasa,
        seed=args.seed,
    )
    print(f"demo ERP written to {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
