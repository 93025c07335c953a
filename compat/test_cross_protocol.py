"""Write with one protocol, read with every other (protocol doc §4.7, §7.4).

Sequences follow the writer: a JSON/PB record has its own sequence; every record of a batch put
shares the batch's one sequence, whichever protocol reads it. Readers page with a small limit so
that a JSON/PB reader has to stop inside a batch and resume there.
"""

import itertools

import pytest

from util import (BLOBS, all_types_schema, assert_rows_equal, attrs_for, blob_records, create_blob_topic,
                  create_tuple_topic, expected_row, put, read_all, rows_for, tuple_records, values)

PAIRS = [pytest.param(w, r, id="%s-to-%s" % (w, r)) for w, r in itertools.product(["json", "pb", "batch"], repeat=2)]


def write_in_two_puts(client, writer, project, topic, records):
    """First three records in one put, the rest in a second; returns the expected sequences."""
    put(client, writer, project, topic, records[:3])
    put(client, writer, project, topic, records[3:])
    if writer == "batch":
        return [0] * 3 + [1] * (len(records) - 3)
    return list(range(len(records)))


@pytest.mark.parametrize("writer,reader", PAIRS)
def test_tuple_cross_protocol(dh, project, client_factory, writer, reader):
    schema = all_types_schema()
    topic = create_tuple_topic(dh, project, schema)
    rows = rows_for(writer)
    records = tuple_records(schema, rows, lambda i: attrs_for(writer, i))
    seqs = write_in_two_puts(client_factory(writer, "lz4"), writer, project, topic, records)

    got = read_all(client_factory(reader, "zlib"), project, topic, "0", schema, limit=2)
    assert_rows_equal([values(r) for r in got], [expected_row(r, reader) for r in rows])
    assert [r.attributes for r in got] == [attrs_for(writer, i) for i in range(len(rows))]
    assert [r.sequence for r in got] == seqs
    # every reader sees the same system times
    reference = read_all(dh, project, topic, "0", schema)
    assert [r.system_time for r in got] == [r.system_time for r in reference]


@pytest.mark.parametrize("writer,reader", PAIRS)
def test_blob_cross_protocol(dh, project, client_factory, writer, reader):
    topic = create_blob_topic(dh, project)
    records = blob_records(BLOBS, lambda i: attrs_for(writer, i))
    seqs = write_in_two_puts(client_factory(writer, "zlib"), writer, project, topic, records)

    got = read_all(client_factory(reader, "lz4"), project, topic, "0", limit=2)
    assert [r.blob_data for r in got] == BLOBS
    assert [r.attributes for r in got] == [attrs_for(writer, i) for i in range(len(BLOBS))]
    assert [r.sequence for r in got] == seqs


@pytest.mark.parametrize("reader", ["json", "pb", "batch"])
def test_interleaved_writers_one_shard(dh, project, client_factory, reader):
    """JSON, PB and batch puts interleaved on one shard read back in write order by every reader."""
    schema = all_types_schema()
    topic = create_tuple_topic(dh, project, schema)
    rows = rows_for("batch")
    expected, seqs, seq = [], [], 0
    for i, writer in enumerate(["batch", "json", "pb", "batch", "json"]):
        chunk = [rows[i % len(rows)], rows[(i + 1) % len(rows)]]
        put(client_factory(writer), writer, project, topic, tuple_records(schema, chunk))
        expected += chunk
        if writer == "batch":
            seqs += [seq, seq]
            seq += 1
        else:
            seqs += [seq, seq + 1]
            seq += 2
    got = read_all(client_factory(reader), project, topic, "0", schema, limit=3)
    assert_rows_equal([values(r) for r in got], expected)
    assert [r.sequence for r in got] == seqs
