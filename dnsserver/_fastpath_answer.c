/*
 * The answering half of meshd's DNS fast path: one query in, one response out.
 *
 * Theory of operation. The answers are built in Python when data changes (dnsserver.zone);
 * per query there is only header checking, a table lookup and byte copies. This file does
 * the same per-query work as dnsserver.query.respond for the common shape of query: a
 * QUERY with one question of class IN, no answer or authority records, at most one
 * additional record that is a well-formed EDNS version 0 OPT, a name found in the zone,
 * and an answer that fits the client's limit. Anything else (errors, REFUSED, NXDOMAIN,
 * truncation, zone transfers) goes to the Python function given as `slow`, which is
 * dnsserver.query.respond itself, so the two paths cannot disagree on the rules; tests
 * compare them byte for byte. The batching of queries is in _fastpath_batch.c.
 *
 * The counters are the same Python objects respond() updates (QueryStats.answered and
 * Answer.turn), so metrics and rotation do not depend on which path answered.
 *
 * A plain name's answers may be one bytes object (a name blob): _fastpath_blob.c answers it.
 *
 * The zone's type tables are tuples indexed by dnsserver.answer.TYPE_SLOTS (type_slot below
 * must number the types the same way), and a rotating answer sends a slice of its body
 * (Answer.rotation: stride, count, size) that wraps around the end of the body to its start,
 * as dnsserver.answer describes (Answer.rotation_at): at most two copies.
 */
#include "_fastpath.h"

#include <string.h>

#define TYPE_IXFR 251
#define TYPE_AXFR 252

static PyObject *s_table, *s_nodata, *s_nxdomain, *s_servfail, *s_synced, *s_rotation,
    *s_body, *s_heads, *s_edns_tail, *s_rcode, *s_answered, *s_turn;

int fp_answer_init(void) {
#define INTERN(var, text) if (!(var = PyUnicode_InternFromString(text))) return -1
    INTERN(s_table, "table");
    INTERN(s_nodata, "nodata");
    INTERN(s_nxdomain, "nxdomain");
    INTERN(s_servfail, "servfail");
    INTERN(s_synced, "synced");
    INTERN(s_rotation, "rotation");
    INTERN(s_body, "body");
    INTERN(s_heads, "heads");
    INTERN(s_edns_tail, "edns_tail");
    INTERN(s_rcode, "rcode");
    INTERN(s_answered, "answered");
    INTERN(s_turn, "turn");
#undef INTERN
    return 0;
}

void fp_context_clear(Context *c) {
    Py_CLEAR(c->table);
    Py_CLEAR(c->nodata);
    Py_CLEAR(c->miss);
    Py_CLEAR(c->answered);
    Py_CLEAR(c->turns);
}

int fp_context_init(Context *c, PyObject *zone, PyObject *stats, PyObject *slow) {
    memset(c, 0, sizeof(*c));
    c->zone = zone;
    c->stats = stats;
    c->slow = slow;
    c->table = PyObject_GetAttr(zone, s_table);
    c->nodata = PyObject_GetAttr(zone, s_nodata);
    c->answered = PyObject_GetAttr(stats, s_answered);
    PyObject *synced = PyObject_GetAttr(zone, s_synced);
    if (!c->table || !c->nodata || !c->answered || !synced || fp_blob_init(c, zone) < 0) {
        Py_XDECREF(synced);
        fp_context_clear(c);
        return -1;
    }
    int is_synced = PyObject_IsTrue(synced);
    Py_DECREF(synced);
    c->miss = PyObject_GetAttr(zone, is_synced ? s_nxdomain : s_servfail);
    if (!c->miss || !PyDict_Check(c->table) || !PyDict_Check(c->answered)) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "zone.table and stats.answered must be dicts");
        fp_context_clear(c);
        return -1;
    }
    return 0;
}

/* stats.answered[qtype << 8 | rcode] += by (an int key: nothing for the GC to track) */
int fp_count_answer(Context *c, long qtype, long rc, long by) {
    PyObject *key = PyLong_FromLong(qtype << 8 | rc);
    if (!key)
        return -1;
    PyObject *old = PyDict_GetItemWithError(c->answered, key);
    long n = 0;
    if (old) {
        n = PyLong_AsLong(old);
    } else if (PyErr_Occurred()) {
        Py_DECREF(key);
        return -1;
    }
    PyObject *value = PyLong_FromLong(n + by);
    int result = value ? PyDict_SetItem(c->answered, key, value) : -1;
    Py_XDECREF(value);
    Py_DECREF(key);
    return result;
}

/* The answer's rcode counted for qtype, `by` times (-1 takes a count back). */
static int count_rcode_of(Context *c, long qtype, PyObject *answer, long by) {
    PyObject *rcode = PyObject_GetAttr(answer, s_rcode);
    if (!rcode)
        return -1;
    long rc = PyLong_AsLong(rcode);
    Py_DECREF(rcode);
    if (rc == -1 && PyErr_Occurred())
        return -1;
    int result = fp_count_answer(c, qtype, rc, by);
    return result;
}

/* The slot of a query type in a type table: dnsserver.answer.TYPE_SLOTS; -1 for none. */
static Py_ssize_t type_slot(long qtype) {
    switch (qtype) {
    case 1: return 0;    /* A */
    case 28: return 1;   /* AAAA */
    case 33: return 2;   /* SRV */
    case 255: return 3;  /* ANY */
    case 16: return 4;   /* TXT */
    case 6: return 5;    /* SOA */
    case 2: return 6;    /* NS */
    default: return -1;
    }
}

/*
 * Fills `out` when `q` (n octets) is a query of the common shape (see the top of this
 * file) and returns 1; returns 0 when the slow path must look at it.
 */
static int parse_query(const unsigned char *q, Py_ssize_t n, Query *out) {
    if (n < 12 || (q[2] & 0xF8) != 0)
        return 0;  /* short, a response, or an opcode other than QUERY */
    static const unsigned char one_question[7] = {0, 1, 0, 0, 0, 0, 0};
    if (memcmp(q + 4, one_question, 7) != 0 || q[11] > 1)
        return 0;
    Py_ssize_t i = 12;
    while (i < n && q[i] != 0 && q[i] <= 63)
        i += q[i] + 1;
    if (i >= n || q[i] != 0 || i - 11 > 255 || i + 5 > n)
        return 0;
    long qtype = (q[i + 1] << 8) | q[i + 2];
    if (q[i + 3] != 0 || q[i + 4] != 1 || qtype == TYPE_AXFR || qtype == TYPE_IXFR)
        return 0;
    Py_ssize_t qend = i + 5;
    out->name_end = i;
    out->qend = qend;
    out->qtype = qtype;
    out->edns = 0;
    out->limit = PLAIN_UDP_LIMIT;
    if (q[11]) {
        if (qend + OPT_LEN > n || q[qend] != 0 || q[qend + 1] != 0 || q[qend + 2] != TYPE_OPT)
            return 0;
        if (qend + OPT_LEN + ((q[qend + 9] << 8) | q[qend + 10]) > n || q[qend + 6] != 0)
            return 0;
        out->edns = 1;
        Py_ssize_t advertised = (q[qend + 3] << 8) | q[qend + 4];
        out->limit = advertised < PLAIN_UDP_LIMIT ? PLAIN_UDP_LIMIT
                   : advertised > MAX_UDP_PAYLOAD ? MAX_UDP_PAYLOAD : advertised;
    }
    return 1;
}

/*
 * The answer of the query's name and type (borrowed; the zone's NODATA answer when the
 * name has no such type). NULL without an exception when the name is not in the table
 * (REFUSED or NXDOMAIN: the slow path checks which), NULL with one on error.
 */
static PyObject *lookup(Context *c, const unsigned char *q, const Query *query,
                        unsigned char *key, PyObject **blob) {
    Py_ssize_t key_len = query->name_end - 11;
    for (Py_ssize_t k = 0; k < key_len; k++) {
        unsigned char ch = q[12 + k];
        key[k] = (ch >= 'A' && ch <= 'Z') ? (unsigned char)(ch + 32) : ch;
    }
    PyObject *key_obj = PyBytes_FromStringAndSize((const char *)key, key_len);
    if (!key_obj)
        return NULL;
    PyObject *types = PyDict_GetItemWithError(c->table, key_obj);
    Py_DECREF(key_obj);
    if (!types)
        return NULL;
    if (PyBytes_Check(types)) {
        *blob = types;
        return NULL;
    }
    /* A type table is a tuple (anything else answers NODATA, as an empty one does). */
    Py_ssize_t slot = type_slot(query->qtype);
    PyObject *found = NULL;
    if (slot >= 0 && PyTuple_Check(types) && slot < PyTuple_GET_SIZE(types))
        found = PyTuple_GET_ITEM(types, slot);
    return (!found || found == Py_None) ? c->nodata : found;
}

/*
 * Where the octets to send start in the body of `answer`, and how many: the whole body, or
 * for a rotating answer the next rotation, whose turn goes in `*turn` (-1: no rotation) for
 * the caller to store once the reply is sent from here (a reply the slow path must cut
 * advances the turn there, once). Returns -1 with a Python exception set.
 */
static int pick_rotation(PyObject *answer, Py_ssize_t body_len, Py_ssize_t *start,
                         Py_ssize_t *size, long *turn_out) {
    *start = 0;
    *size = body_len;
    *turn_out = -1;
    PyObject *rotation = PyObject_GetAttr(answer, s_rotation);
    if (!rotation)
        return -1;
    if (!PyTuple_Check(rotation) || PyTuple_GET_SIZE(rotation) != 3) {
        Py_DECREF(rotation);
        return 0;  /* () : no rotation */
    }
    long stride = PyLong_AsLong(PyTuple_GET_ITEM(rotation, 0));
    long count = PyLong_AsLong(PyTuple_GET_ITEM(rotation, 1));
    long length = PyLong_AsLong(PyTuple_GET_ITEM(rotation, 2));
    Py_DECREF(rotation);
    if (PyErr_Occurred())
        return -1;
    PyObject *turn = PyObject_GetAttr(answer, s_turn);
    long next = turn ? PyLong_AsLong(turn) + 1 : -1;
    Py_XDECREF(turn);
    if (next < 0) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "malformed Answer.turn");
        return -1;
    }
    *turn_out = next;
    if (count < 1 || stride < 0 || length < 0) {
        PyErr_SetString(PyExc_TypeError, "malformed Answer.rotation");
        return -1;
    }
    *start = (Py_ssize_t)((next % count) * stride);
    *size = (Py_ssize_t)length;
    /* The slice may wrap past the end to the start, but never start past the end nor be
     * longer than the whole ring. */
    if (*start >= body_len || *size > body_len) {
        PyErr_SetString(PyExc_TypeError, "Answer.rotation beyond its body");
        return -1;
    }
    return 0;
}

/*
 * Writes the response carrying `answer` (its next rotation) into `out`. Returns its length,
 * 0 when it does not fit the limit (the slow path cuts it), -1 with an exception set.
 */
static Py_ssize_t write_reply(const unsigned char *q, const Query *query, PyObject *answer,
                              unsigned char *out) {
    int edns = query->edns;
    PyObject *body = PyObject_GetAttr(answer, s_body);
    PyObject *heads = PyObject_GetAttr(answer, s_heads);
    PyObject *tail = edns ? PyObject_GetAttr(answer, s_edns_tail) : NULL;
    Py_ssize_t written = -1;
    Py_ssize_t start, body_len;
    long turn;
    if (!body || !heads || (edns && !tail) || !PyBytes_Check(body) || !PyTuple_Check(heads) ||
        PyTuple_GET_SIZE(heads) != 4 || (edns && !PyBytes_Check(tail)))
        goto done;
    if (pick_rotation(answer, PyBytes_GET_SIZE(body), &start, &body_len, &turn) < 0)
        goto done;
    PyObject *head = PyTuple_GET_ITEM(heads, (q[2] & 0x01) | (edns << 1));
    Py_ssize_t tail_len = edns ? PyBytes_GET_SIZE(tail) : 0;
    Py_ssize_t qend = query->qend;
    Py_ssize_t total = qend + body_len + tail_len;
    if (!PyBytes_Check(head))
        goto done;
    if (total > query->limit || total > FP_OUT_SIZE || PyBytes_GET_SIZE(head) != 10) {
        written = 0;
        goto done;
    }
    if (turn >= 0) {
        PyObject *turn_obj = PyLong_FromLong(turn);
        int stored = turn_obj ? PyObject_SetAttr(answer, s_turn, turn_obj) : -1;
        Py_XDECREF(turn_obj);
        if (stored < 0)
            goto done;
    }
    out[0] = q[0];
    out[1] = q[1];
    memcpy(out + 2, PyBytes_AS_STRING(head), 10);
    memcpy(out + 12, q + 12, qend - 12);
    {
        /* The rotation's octets: to the end of the body, then from its start (a wrap). */
        Py_ssize_t first = PyBytes_GET_SIZE(body) - start;
        first = first < body_len ? first : body_len;
        memcpy(out + qend, PyBytes_AS_STRING(body) + start, first);
        memcpy(out + qend + first, PyBytes_AS_STRING(body), body_len - first);
    }
    if (edns)
        memcpy(out + qend + body_len, PyBytes_AS_STRING(tail), tail_len);
    written = total;
done:
    Py_XDECREF(body);
    Py_XDECREF(heads);
    Py_XDECREF(tail);
    if (written < 0 && !PyErr_Occurred())
        PyErr_SetString(PyExc_TypeError, "malformed Answer object");
    return written;
}

/*
 * Answer one query on the fast path. Returns the response length written to `out`, 0 to
 * hand the query to the slow path, or -1 with a Python exception set.
 */
static Py_ssize_t fast_answer(Context *c, const unsigned char *q, Py_ssize_t n,
                              unsigned char *out) {
    Query query;
    if (!parse_query(q, n, &query))
        return 0;
    PyObject *blob = NULL;
    unsigned char key[256];  /* the name, lower-case: the table's key */
    PyObject *found = lookup(c, q, &query, key, &blob);
    if (blob) {
        Py_ssize_t written = fp_blob_answer(c, q, &query, blob, key, out);
        if (written != -2)
            return written;
        found = c->nodata;  /* NODATA, as for a type table without the type */
    }
    if (!found)
        return PyErr_Occurred() ? -1 : 0;
    Py_INCREF(found);  /* the turn update in write_reply runs Python code */
    Py_ssize_t written = -1;
    if (count_rcode_of(c, query.qtype, found, 1) == 0) {
        written = write_reply(q, &query, found, out);
        /* Needs cutting: undo the count (the slow path counts it again) and hand over. */
        if (written == 0 && count_rcode_of(c, query.qtype, found, -1) < 0)
            written = -1;
    }
    Py_DECREF(found);
    return written;
}

/* The slow path: slow(zone, query, True, stats) -> bytes | None, copied into `out`. */
static Py_ssize_t slow_answer(Context *c, const unsigned char *q, Py_ssize_t n,
                              unsigned char *out) {
    PyObject *query = PyBytes_FromStringAndSize((const char *)q, n);
    if (!query)
        return -1;
    PyObject *reply = PyObject_CallFunctionObjArgs(c->slow, c->zone, query, Py_True, c->stats,
                                                   NULL);
    Py_DECREF(query);
    if (!reply)
        return -1;
    Py_ssize_t length = 0;
    if (reply != Py_None) {
        if (!PyBytes_Check(reply) || PyBytes_GET_SIZE(reply) > FP_OUT_SIZE) {
            Py_DECREF(reply);
            PyErr_SetString(PyExc_ValueError, "slow path returned an oversized reply");
            return -1;
        }
        length = PyBytes_GET_SIZE(reply);
        memcpy(out, PyBytes_AS_STRING(reply), length);
    }
    Py_DECREF(reply);
    return length;
}

Py_ssize_t fp_answer_one(Context *c, const unsigned char *q, Py_ssize_t n, unsigned char *out) {
    Py_ssize_t length = fast_answer(c, q, n, out);
    if (length == 0 && !PyErr_Occurred())
        length = slow_answer(c, q, n, out);
    return length;
}

PyObject *fp_answer(PyObject *self, PyObject *args) {
    PyObject *zone, *stats, *slow;
    Py_buffer query;
    if (!PyArg_ParseTuple(args, "Oy*OO", &zone, &query, &stats, &slow))
        return NULL;
    Context c;
    if (fp_context_init(&c, zone, stats, slow) < 0) {
        PyBuffer_Release(&query);
        return NULL;
    }
    static unsigned char out[FP_OUT_SIZE];
    Py_ssize_t length = fp_answer_one(&c, query.buf, query.len, out);
    PyBuffer_Release(&query);
    fp_context_clear(&c);
    if (length < 0)
        return NULL;
    if (length == 0)
        Py_RETURN_NONE;
    return PyBytes_FromStringAndSize((const char *)out, length);
}
