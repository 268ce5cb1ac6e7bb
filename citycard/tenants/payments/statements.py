"""The providers' daily statements (对账单) loaded by the database itself, set-based.

Each provider's file is cut in Python only where its format has framing (a header row, footers, a zip);
the detail rows go to PostgreSQL in one COPY into a scratch table of raw text columns, and one
``INSERT … SELECT`` turns them into the reconciliation's lines (``payments_stage_line``: kind, order and
refund numbers, amounts and fees in fen, the time). The file's own totals (summary row, footers, trailer)
are then checked against what was loaded: a truncated or altered file is refused whole. A million lines
load in seconds; the same lines as each protocol module's ``*_parse`` reads line by line in Python.

Amounts in yuan are converted exactly (``numeric``, then whole fen: a third decimal is refused); times
carry Beijing's offset. Nothing here decides anything about the ledger: ``services.statement_reconcile``
joins the lines to the orders and refunds.
"""

from __future__ import annotations

import io
import re
import zipfile

from django.db import DatabaseError, connection, transaction

from citycard.tenants.payments.protocols import (
    ProtocolError,
    alipay,
    fen_of_yuan,
    unionpay,
    wechat,
    yuan_text,
)

STAGE = (
    "CREATE TEMP TABLE payments_stage_line (kind text, out_trade_no text, provider_trade_no text,"
    " out_refund_no text, amount_fen bigint, fee_fen bigint, at timestamptz) ON COMMIT DROP"
)
TEMP_BUFFERS = "512MB"
_INSERT = (
    "INSERT INTO payments_stage_line (kind, out_trade_no, provider_trade_no, out_refund_no, amount_fen,"
    " fee_fen, at) "
)


def stage_create() -> None:
    """The scratch table of lines. A million lines of raw text and their lines are a few hundred MB: the
    session's buffers for temporary tables are raised first (8 MB by default: the load would otherwise go
    through the disk), which PostgreSQL allows only before the session's first temporary table — a
    session that had one keeps its size (the savepoint takes the refusal back)."""
    try:
        with transaction.atomic(), connection.cursor() as cur:
            cur.execute(f"SET LOCAL temp_buffers = '{TEMP_BUFFERS}'")
    except DatabaseError:
        pass
    with connection.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS payments_stage_line")
        cur.execute(STAGE)


def stage_drop() -> None:
    with connection.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS payments_stage_line")


def stage_totals() -> tuple[int, int, int, int]:
    """(lines, paid fen, refunded fen, net fees fen) of what was loaded."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(*), COALESCE(sum(amount_fen) FILTER (WHERE kind = 'pay'), 0),"
            " COALESCE(sum(amount_fen) FILTER (WHERE kind = 'refund'), 0), COALESCE(sum(fee_fen), 0)"
            " FROM payments_stage_line"
        )
        return cur.fetchone()


def _kind_totals() -> dict[str, tuple[int, int]]:
    with connection.cursor() as cur:
        cur.execute(
            "SELECT kind, count(*), COALESCE(sum(amount_fen), 0) FROM payments_stage_line GROUP BY kind"
        )
        return {kind: (count, total) for kind, count, total in cur.fetchall()}


def _fen(fen100: str) -> str:
    """SQL: an amount already read as ``numeric`` yuan × 100 (once, in the inner query) as whole fen, exactly;
    a value with more than two decimals is NULL (refused by ``_null_check``). A value that is no number
    fails the ``numeric`` cast itself (the file refused whole)."""
    return f"(CASE WHEN {fen100} = trunc({fen100}) THEN {fen100} END)::bigint"


# Each field is cut (and each amount read) once a line in an inner query that ``OFFSET 0`` keeps from being
# folded into the outer one (which would repeat every expression where it is used).


def _raw(width: int, name: str = "payments_raw_stage") -> None:
    columns = ", ".join(f"c{i + 1} text" for i in range(width))
    with connection.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {name}")
        cur.execute(f"CREATE TEMP TABLE {name} ({columns}) ON COMMIT DROP")


def _copy(sql: str, data: bytes) -> None:
    with connection.cursor() as cur:
        cur.cursor.copy_expert(sql, io.BytesIO(data))


def _null_check(what: str) -> None:
    """A line whose amount or time did not convert is a line the statement does not say clearly: refused."""
    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM payments_stage_line WHERE amount_fen IS NULL OR fee_fen IS NULL OR at IS NULL"
        )
        bad = cur.fetchone()[0]
    if bad:
        raise ProtocolError(
            f"{bad} lines of the {what} carry an amount that is not in whole fen", code="bad_statement"
        )


# --- WeChat Pay: the trade bill, CSV with backquoted fields and its summary rows ------------------------------


def load_wechat(data: bytes) -> None:
    col, body, summary = wechat.bill_body(data)
    c = {name: f"c{i + 1}" for name, i in col.items()}
    _raw(len(col))
    _copy("COPY payments_raw_stage FROM STDIN WITH (FORMAT csv)", body)
    with connection.cursor() as cur:
        cur.execute(
            _INSERT + "SELECT CASE WHEN refund THEN 'refund' ELSE 'pay' END, out_trade_no, provider_trade_no,"
            f" CASE WHEN refund THEN out_refund_no ELSE '' END, {_fen('amount100')}, {_fen('fee100')}, at"
            f" FROM (SELECT {c['交易状态']} = 'REFUND' AS refund, {c['商户订单号']} AS out_trade_no,"
            f" {c['微信订单号']} AS provider_trade_no, {c['商户退款单号']} AS out_refund_no,"
            f" (CASE WHEN {c['交易状态']} = 'REFUND' THEN {c['退款金额']} ELSE {c['应结订单金额']} END)::numeric * 100"
            f" AS amount100, {c['手续费']}::numeric * 100 AS fee100, ({c['交易时间']} || '+08')::timestamptz AS at"
            " FROM payments_raw_stage OFFSET 0) l"
        )
        cur.execute("DROP TABLE payments_raw_stage")
    _null_check("trade bill")
    count, paid, refunded, _ = stage_totals()
    if (str(count), fen_of_yuan(summary[1]), fen_of_yuan(summary[2])) != (summary[0], paid, refunded):
        raise ProtocolError(
            f"the trade bill's summary ({summary[0]} rows, {summary[1]} paid, {summary[2]} refunded) does not "
            f"match its rows ({count}, {yuan_text(paid)}, {yuan_text(refunded)})",
            code="bad_statement",
        )


# --- Alipay: a zip holding the GBK detail CSV with # header lines and 合计 footers ------------------------------

_ALIPAY_FOOTER = re.compile(r"^#(交易|退款)合计：(\d+)笔，商家实收共(-?[\d.]+)元", re.M)


def load_alipay(data: bytes) -> None:
    """The detail CSV's rows COPYed as GBK (the database converts); its footers checked per kind."""
    if data[:2] == b"PK":
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            name = next((n for n in z.namelist() if n.endswith("业务明细.csv")), None)
            if name is None:
                raise ProtocolError("the Alipay bill zip has no 业务明细.csv", code="bad_statement")
            data = z.read(name)
    column_row = alipay.BILL_COLUMNS[0].encode("gbk")
    start = data.find(b"\n" + column_row)
    if start < 0 and not data.startswith(column_row):
        raise ProtocolError("not an Alipay bill (its column row is missing)", code="bad_statement")
    start = start + 1 if start >= 0 else 0
    header_end = data.find(b"\n", start)
    header = data[start:header_end].decode("gbk").strip().split(",")
    body_end = data.find(b"\n#", header_end)
    body_end = len(data) if body_end < 0 else body_end + 1
    body, tail = data[header_end + 1 : body_end], data[body_end:].decode("gbk")
    footers = {m.group(1): (int(m.group(2)), fen_of_yuan(m.group(3))) for m in _ALIPAY_FOOTER.finditer(tail)}
    col = {name: f"c{i + 1}" for i, name in enumerate(header)}
    missing = [
        n
        for n in (
            "支付宝交易号",
            "商户订单号",
            "业务类型",
            "完成时间",
            "商家实收（元）",
            "退款批次号/请求号",
            "服务费（元）",
        )
        if n not in col
    ]
    if missing:
        raise ProtocolError(f"the Alipay bill lacks the columns {', '.join(missing)}", code="bad_statement")
    _raw(len(header))
    # Empty lines are dropped by the database (a blank row is not a record); the two number columns carry
    # a trailing tab (so spreadsheet programs keep them text), trimmed here.
    if b"\n\n" in body or b"\n\r\n" in body:
        body = b"\n".join(line for line in body.split(b"\n") if line.strip())
    _copy("COPY payments_raw_stage FROM STDIN WITH (FORMAT csv, ENCODING 'GBK')", body)

    def t(name: str) -> str:
        return f"btrim({col[name]}, E' \\t\\r')"

    with connection.cursor() as cur:
        cur.execute(
            _INSERT + "SELECT CASE WHEN refund THEN 'refund' ELSE 'pay' END, out_trade_no, provider_trade_no,"
            f" CASE WHEN refund THEN out_refund_no ELSE '' END,"
            f" CASE WHEN refund THEN -{_fen('amount100')} ELSE {_fen('amount100')} END, -{_fen('fee100')}, at"
            f" FROM (SELECT {t('业务类型')} = '退款' AS refund, {t('商户订单号')} AS out_trade_no,"
            f" {t('支付宝交易号')} AS provider_trade_no, {t('退款批次号/请求号')} AS out_refund_no,"
            f" {t('商家实收（元）')}::numeric * 100 AS amount100, {t('服务费（元）')}::numeric * 100 AS fee100,"
            f" ({t('完成时间')} || '+08')::timestamptz AS at FROM payments_raw_stage OFFSET 0) l"
        )
        cur.execute("DROP TABLE payments_raw_stage")
    _null_check("Alipay bill")
    loaded = _kind_totals()
    for kind, name, sign in (("pay", "交易", 1), ("refund", "退款", -1)):
        count, total = loaded.get(kind, (0, 0))
        if footers.get(name) != (count, sign * total):
            raise ProtocolError(
                f"the Alipay bill's {name}合计 {footers.get(name)} does not match its rows {(count, sign * total)}",
                code="bad_statement",
            )


# --- UnionPay: the fixed-width transaction file (流水文件) in a zip, GBK -------------------------------------


def load_unionpay(data: bytes, *, year: int) -> None:
    """Each line COPYed whole as one text value and cut by the layout's byte positions (GBK) in SQL; a line
    of another width in GBK bytes is refused. ``year``: the file's lines carry MMDDhhmmss only; the file
    name's date, else the statement's, names the year."""
    if data[:2] == b"PK":
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            names = [n for n in z.namelist() if "ZM_" in n]
            if not names:
                raise ProtocolError("the UnionPay zip has no ZM transaction file", code="bad_statement")
            data = z.read(names[0])
            if names[0].startswith("INN") and names[0][3:5].isdigit():
                year = 2000 + int(names[0][3:5])
    width = sum(w for _, w in unionpay.LAYOUT) + len(unionpay.LAYOUT) - 1
    # The layout is in GBK bytes (a Chinese character is two). A line COPYed in is UTF-8 text: when every
    # line is ASCII (most files: the short name is often empty) its UTF-8 bytes are its GBK bytes and are cut
    # as they are, one walk a line; otherwise each line is converted back to GBK and cut there.
    pos, cut_of = 1, {}
    for name, w in unionpay.LAYOUT:
        cut_of[name] = f"btrim(convert_from(substring(b from {pos} for {w}), %(encoding)s))"
        pos += w + 1
    with connection.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS payments_raw_stage")
        cur.execute("CREATE TEMP TABLE payments_raw_stage (line text) ON COMMIT DROP")
    # One column, no quoting, no escapes: the delimiter and the quote are bytes a GBK text never holds.
    _copy(
        "COPY payments_raw_stage FROM STDIN WITH (FORMAT csv, DELIMITER E'\\x01', QUOTE E'\\x02', ENCODING 'GBK')",
        data,
    )
    blank = "btrim(line, E' \\r') = ''"
    gbk_bytes = (
        "CASE WHEN octet_length(line) = length(line) THEN octet_length(line)"
        " ELSE octet_length(convert_to(line, 'GBK')) END"
    )
    with connection.cursor() as cur:
        cur.execute(
            "SELECT count(*) FILTER (WHERE octet_length(line) <> length(line)),"
            f" count(*) FILTER (WHERE {gbk_bytes} <> %s)"
            f" FROM payments_raw_stage WHERE line IS NOT NULL AND NOT {blank}",
            [width],
        )
        not_ascii, wrong = cur.fetchone()
        if wrong:
            cur.execute(
                "SELECT count(*), min(n) FROM (SELECT row_number() OVER () AS n, line FROM payments_raw_stage) l"
                f" WHERE line IS NOT NULL AND {gbk_bytes} <> %s AND NOT {blank}",
                [width],
            )
            bad, first = cur.fetchone()
            raise ProtocolError(
                f"{bad} lines are not {width} bytes of GBK (line {first} the first)", code="bad_statement"
            )
        t, fee = "txn_time", "fee"
        encoding = "'GBK'" if not_ascii else "'UTF8'"
        field = {name: expr % {"encoding": encoding} for name, expr in cut_of.items()}
        cut = ", ".join(f"{expr} AS {name}" for name, expr in field.items())
        to_bytes = "convert_to(line, 'GBK')" if not_ascii else "convert_to(line, 'UTF8')"
        lines = f"(SELECT line, {to_bytes} AS b FROM payments_raw_stage OFFSET 0) r"
        cur.execute(
            _INSERT + f"SELECT CASE WHEN refund THEN 'refund' ELSE 'pay' END,"
            " CASE WHEN refund THEN '' ELSE order_id END, CASE WHEN refund THEN orig_query_id ELSE query_id END,"
            " CASE WHEN refund THEN order_id ELSE '' END, txn_amt::bigint,"
            f" CASE WHEN left({fee}, 1) = 'D' THEN -1 ELSE 1 END * substr({fee}, 2)::bigint,"
            f" (%s || '-' || substr({t}, 1, 2) || '-' || substr({t}, 3, 2) || ' ' || substr({t}, 5, 2) || ':'"
            f" || substr({t}, 7, 2) || ':' || substr({t}, 9, 2) || '+08')::timestamptz"
            f" FROM (SELECT {cut}, {field['txn_code']} = '{unionpay.TXN_REFUND}' AS refund"
            f" FROM {lines} WHERE line IS NOT NULL AND octet_length(b) = %s OFFSET 0) l",
            [str(year), width],
        )
        cur.execute("DROP TABLE payments_raw_stage")


# --- the card bank: H|…, D|… records, T|count|paid|refunded ------------------------------------------------


def load_bank(data: bytes) -> None:
    """The header and trailer records read in Python, the detail records COPYed with ``|`` as the
    delimiter (a record of another field count is refused by COPY itself), the trailer checked."""
    text_end = len(data.rstrip(b"\r\n"))
    first_end = data.find(b"\n")
    last_start = data.rfind(b"\n", 0, text_end) + 1
    head = data[:first_end].decode("utf-8").strip() if first_end >= 0 else ""
    trailer = data[last_start:text_end].decode("utf-8").strip()
    if not head.startswith("H|") or not trailer.startswith("T|") or last_start <= first_end:
        raise ProtocolError("not a bank statement (header or trailer record missing)", code="bad_statement")
    body = data[first_end + 1 : last_start]
    _raw(9)
    _copy("COPY payments_raw_stage FROM STDIN WITH (FORMAT csv, DELIMITER '|', QUOTE E'\\x02')", body)
    with connection.cursor() as cur:
        cur.execute("SELECT count(*) FROM payments_raw_stage WHERE c1 IS DISTINCT FROM 'D'")
        if cur.fetchone()[0]:
            raise ProtocolError(
                "the statement holds a record that is not a detail (D) record", code="bad_statement"
            )
        t = "c8"
        cur.execute(
            _INSERT + "SELECT CASE WHEN c5 = 'RFD' THEN 'refund' ELSE 'pay' END, c4, c3,"
            " CASE WHEN c5 = 'RFD' THEN COALESCE(c9, '') ELSE '' END, c6::bigint, c7::bigint,"
            f" (left({t}, 8) || ' ' || substr({t}, 9, 2) || ':' || substr({t}, 11, 2) || ':' || substr({t}, 13, 2)"
            " || '+08')::timestamptz FROM payments_raw_stage"
        )
        cur.execute("DROP TABLE payments_raw_stage")
    count, paid, refunded, _ = stage_totals()
    if trailer.split("|")[1:] != [str(count), str(paid), str(refunded)]:
        raise ProtocolError(
            f"the statement's trailer {trailer!r} does not match its records", code="bad_statement"
        )


def load(provider: str, data: bytes, *, year: int) -> None:
    """The statement of ``provider`` into ``payments_stage_line`` (created by ``stage_create``)."""
    if provider == "wechat":
        load_wechat(data)
    elif provider == "alipay":
        load_alipay(data)
    elif provider == "unionpay":
        load_unionpay(data, year=year)
    elif provider == "bank":
        load_bank(data)
    else:
        raise ProtocolError(f"no statement format for {provider!r}", code="bad_statement")
