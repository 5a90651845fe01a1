"""Property tests of the AT line framer, the result classifier and the answer parsers (no I/O)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.at import (
    MAX_LINE_BYTES,
    ATParseError,
    Indicator,
    LineFramer,
    Operator,
    PdpAddress,
    Registration,
    SignalQuality,
    describe_result,
    is_final,
    is_urc,
    parse_cereg,
    parse_cgpaddr,
    parse_ciev,
    parse_cops,
    parse_creg,
    parse_csq,
    parse_csqf,
    parse_sbdreg,
    split_fields,
)

# ---------------------------------------------------------------------------------------------------------------
# Framer

line_noise = st.binary(max_size=300) | st.lists(
    st.sampled_from([b"\r", b"\n", b"\r\n", b"OK", b"+CSQ: 17,99", b"\xff\xfe", b"\x00", b"AT+CSQ", b"~" * 700]),
    max_size=40,
).map(b"".join)


def feed_chunked(data: bytes, cuts: list[int]) -> list[str]:
    framer = LineFramer()
    lines: list[str] = []
    bounds = [0, *sorted({c % (len(data) + 1) for c in cuts}), len(data)]
    for start, end in itertools.pairwise(bounds):
        lines += framer.feed(data[start:end])
    return lines


@given(line_noise, st.lists(st.integers(min_value=0, max_value=10_000), max_size=20))
def test_framer_yields_the_same_lines_however_the_bytes_are_chunked(data: bytes, cuts: list[int]) -> None:
    whole = LineFramer().feed(data)
    assert feed_chunked(data, cuts) == whole
    byte_by_byte = LineFramer()
    assert [line for i in range(len(data)) for line in byte_by_byte.feed(data[i : i + 1])] == whole
    for line in whole:
        assert line and "\r" not in line and "\n" not in line
        assert len(line.encode("utf-8", errors="surrogatepass")) <= 3 * MAX_LINE_BYTES


@given(
    st.lists(
        st.text(alphabet=st.characters(blacklist_characters="\r\n\x00", blacklist_categories=["Cs"]), min_size=1)
        .map(str.strip)
        .filter(bool),
        max_size=10,
    ),
    st.lists(st.integers(min_value=0, max_value=10_000), max_size=10),
)
def test_framer_recovers_crlf_framed_lines(lines: list[str], cuts: list[int]) -> None:
    data = b"".join(b"\r\n" + line.encode() + b"\r\n" for line in lines)
    expected = [line for line in lines if len(line.encode()) <= MAX_LINE_BYTES]
    assert feed_chunked(data, cuts) == expected


def test_framer_drops_overlong_lines_and_keeps_the_next_one() -> None:
    framer = LineFramer()
    assert framer.feed(b"x" * 5000) == []
    assert framer.feed(b"yyy\r\nOK\r\n") == ["OK"]


def test_framer_survives_non_utf8() -> None:
    assert LineFramer().feed(b"\xff\xfeOK\r\n") == ["\ufffd\ufffdOK"]


# ---------------------------------------------------------------------------------------------------------------
# Classification


@pytest.mark.parametrize(
    "line",
    ["+CREG: 1", '+CREG: 5,"1A2B","01C3D4E5",7', "+CEREG: 2", "+CIEV:0,3", "RING", "SBDRING", "+CGEV: ME DETACH"],
)
def test_urcs_are_recognised(line: str) -> None:
    assert is_urc(line)


@pytest.mark.parametrize("line", ["+CREG: 2,1", '+CREG: 2,1,"1A2B","01C3D4E5",7', "+CEREG: 0,5", "+CSQ: 1,2", "OK"])
def test_query_answers_are_not_urcs(line: str) -> None:
    assert not is_urc(line)


@pytest.mark.parametrize(
    "line", ["OK", "ERROR", "+CME ERROR: 10", "+CME ERROR: SIM not inserted", "+CMS ERROR: 500", "NO CARRIER",
             "BUSY", "NO ANSWER", "COMMAND NOT SUPPORT", "0", "4"],
)  # fmt: skip
def test_final_results_are_recognised(line: str) -> None:
    assert is_final(line)


def test_cme_numbers_are_explained() -> None:
    assert describe_result("+CME ERROR: 10") == "+CME ERROR: 10 (SIM not inserted)"
    assert describe_result("+CME ERROR: 999") == "+CME ERROR: 999"
    assert describe_result("+CME ERROR: SIM busy") == "+CME ERROR: SIM busy"


# ---------------------------------------------------------------------------------------------------------------
# Parsers: examples from the reference


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("+CSQ: 17,99", SignalQuality(17, 99)),
        ("+CSQ:3", SignalQuality(3, None)),
        ("+CSQ: 99,99", SignalQuality(99, 99)),
    ],
)
def test_parse_csq(text: str, expected: SignalQuality) -> None:
    assert parse_csq(text) == expected


def test_parse_csqf() -> None:
    assert parse_csqf("+CSQF:4") == SignalQuality(4, None)
    with pytest.raises(ATParseError, match=r"\+CSQF"):
        parse_csqf("+CSQ:4")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("+CREG: 0,1", Registration(1, n=0)),
        ('+CREG: 2,1,"1A2B","01C3D4E5",7', Registration(1, 2, "1A2B", "01C3D4E5", 7)),
        ('+CREG: 2,5,"1A2B","01C3D4E5"', Registration(5, 2, "1A2B", "01C3D4E5")),
        ("+CREG: 2", Registration(2)),
        ('+CREG: 1,"1A2B","01C3D4E5",7', Registration(1, None, "1A2B", "01C3D4E5", 7)),
        ('+CREG: 1,"1A2B","01C3D4E5"', Registration(1, None, "1A2B", "01C3D4E5")),
    ],
)
def test_parse_creg(text: str, expected: Registration) -> None:
    assert parse_creg(text) == expected


def test_parse_cereg_with_extra_fields() -> None:
    assert parse_cereg('+CEREG: 4,1,"00C3","0A1B2C3D",7,,,"00100100","01000111"').stat == 1
    assert parse_cereg("+CEREG: 3") == Registration(3)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("+COPS: 0", Operator(0)),
        ('+COPS: 0,0,"Orange F",7', Operator(0, 0, "Orange F", 7)),
        ('+COPS: 1,2,"20801"', Operator(1, 2, "20801")),
        ('+COPS: 0,0,"Op, with comma",2', Operator(0, 0, "Op, with comma", 2)),
    ],
)
def test_parse_cops(text: str, expected: Operator) -> None:
    assert parse_cops(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("+CGPADDR: 1", PdpAddress(1, ())),
        ('+CGPADDR: 1,"10.64.12.7"', PdpAddress(1, ("10.64.12.7",))),
        ('+CGPADDR: 2,"10.0.0.2","2001:db8::1"', PdpAddress(2, ("10.0.0.2", "2001:db8::1"))),
        ('+CGPADDR: 1,"2001:DB8::1"', PdpAddress(1, ("2001:db8::1",))),
        ('+CGPADDR: 1,"32.1.13.184.0.0.0.0.0.0.0.0.0.0.0.1"', PdpAddress(1, ("2001:db8::1",))),
        ('+CGPADDR: 1,"0.0.0.0"', PdpAddress(1, ())),
        ("+CGPADDR: 3,10.1.2.3", PdpAddress(3, ("10.1.2.3",))),
    ],
)
def test_parse_cgpaddr(text: str, expected: PdpAddress) -> None:
    assert parse_cgpaddr(text) == expected


def test_parse_sbdreg_and_ciev() -> None:
    assert parse_sbdreg("+SBDREG:2") == 2
    assert parse_sbdreg("+SBDREG: 1,0") == 1
    assert parse_ciev("+CIEV:0,5") == Indicator(0, 5)
    assert parse_ciev("+CIEV: 1,0") == Indicator(1, 0)
    with pytest.raises(ATParseError, match="above 1"):
        parse_ciev("+CIEV:2,7")


@pytest.mark.parametrize(
    ("parser", "text"),
    [(parse_csq, "+CSQ: ,"), (parse_csq, "+CSQ: 1_0"), (parse_csq, "+CSQ: ٣"), (parse_csq, "+CSQ: " + "9" * 5000),
     (parse_creg, '+CREG: 2,1,"1A2B'), (parse_creg, '+CREG: 1,"zz","01"'), (parse_cops, '+COPS: 0,2,"abc"'),
     (parse_cgpaddr, '+CGPADDR: 1,"999.1.1.1"'), (parse_sbdreg, "+SBDREG:7"), (parse_csq, "garbage")],
)  # fmt: skip
def test_bad_answers_raise_a_parse_error_naming_command_and_text(parser, text: str) -> None:
    with pytest.raises(ATParseError) as err:
        parser(text)
    assert isinstance(err.value, ValueError)
    assert err.value.text == text and err.value.command in str(err.value)


def test_split_fields_keeps_commas_inside_quotes() -> None:
    assert split_fields("+X", '1,"a,b", 3') == [("1", False), ("a,b", True), ("3", False)]


# ---------------------------------------------------------------------------------------------------------------
# Parsers: properties

PARSERS = {
    "+CSQ": (parse_csq, SignalQuality),
    "+CSQF": (parse_csqf, SignalQuality),
    "+CREG": (parse_creg, Registration),
    "+CEREG": (parse_cereg, Registration),
    "+COPS": (parse_cops, Operator),
    "+CGPADDR": (parse_cgpaddr, PdpAddress),
    "+SBDREG": (parse_sbdreg, int),
    "+CIEV": (parse_ciev, Indicator),
}
answerish = st.text(alphabet=st.sampled_from('0123456789,": .ABCDEFabcdef:x'), max_size=40)


@given(st.sampled_from(sorted(PARSERS)), st.text(max_size=60) | answerish, st.booleans())
def test_parsers_return_a_value_or_raise_a_parse_error(command: str, tail: str, prefixed: bool) -> None:
    parser, kind = PARSERS[command]
    text = f"{command}:{tail}" if prefixed else tail
    try:
        value = parser(text)
    except ATParseError as exc:
        assert exc.command == command and exc.text == text
    else:
        assert isinstance(value, kind)


@given(st.integers(0, 99), st.integers(0, 99), st.sampled_from([":", ": ", ":  "]))
def test_csq_round_trip(rssi: int, ber: int, sep: str) -> None:
    assert parse_csq(f"+CSQ{sep}{rssi},{ber}") == SignalQuality(rssi, ber)
    assert parse_csq(f"+CSQ{sep}{rssi}") == SignalQuality(rssi, None)


hexid = st.text(alphabet="0123456789ABCDEF", min_size=1, max_size=8)


@given(st.integers(0, 2), st.integers(0, 10), st.none() | st.tuples(hexid, hexid, st.none() | st.integers(0, 15)))
def test_creg_round_trip_query_and_urc_forms(n: int, stat: int, cell) -> None:
    tail = "" if cell is None else f',"{cell[0]}","{cell[1]}"' + ("" if cell[2] is None else f",{cell[2]}")
    lac, ci, act = (None, None, None) if cell is None else cell
    assert parse_creg(f"+CREG: {n},{stat}{tail}") == Registration(stat, n, lac, ci, act)
    urc = f"+CREG: {stat}{tail}"
    assert parse_creg(urc) == Registration(stat, None, lac, ci, act)
    assert is_urc(urc)


@given(
    st.integers(0, 4),
    st.integers(0, 1),
    st.text(alphabet=st.characters(whitelist_categories=["L", "N", "Zs"]), max_size=20).map(str.strip),
)
def test_cops_round_trip(mode: int, fmt: int, name: str) -> None:
    assert parse_cops(f'+COPS: {mode},{fmt},"{name}",7') == Operator(mode, fmt, name or None, 7)


@given(st.integers(0, 255), st.ip_addresses(v=4), st.none() | st.ip_addresses(v=6))
def test_cgpaddr_round_trip(cid: int, v4, v6) -> None:
    text = f'+CGPADDR: {cid},"{v4}"' + ("" if v6 is None else f',"{v6}"')
    expected = tuple(str(a) for a in (v4, v6) if a is not None and not a.is_unspecified)
    assert parse_cgpaddr(text) == PdpAddress(cid, expected)
