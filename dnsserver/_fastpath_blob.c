/*
 * The DNS fast path's reading of a plain name's answers held in one bytes object (a "name
 * blob", dnsserver.nameblob, which describes the layout: blob_pick must read it the same
 * way as nameblob.pick does).
 *
 * Theory of operation. The zone's table maps such a name to the blob instead of a type
 * table; _fastpath_answer.c hands it here. blob_pick finds the answer of the query type
 * (the full set at the name the blob was built for, only its SRV answer at a longer name
 * sharing it, ANY the first answer present), checking every offset against the blob's
 * length (a malformed blob is a TypeError, never a read out of bounds). write_blob writes
 * the response as write_reply does for an Answer: the NOERROR header with AA and RD echoed,
 * the question, the answer's octets (SRV records each followed by their target, the
 * service's name: the end of the key looked up; a rotating answer's next rotation, wrapping around
 * its ring, its counter advanced in place in the zone's bytearray zone.turns.counters:
 * u32 little-endian, the turn modulo the rotation count) and our OPT record for EDNS. The
 * answer counter is the same dict respond() updates.
 */
#include "_fastpath.h"

#include <string.h>

static PyObject *s_turns, *s_counters;  /* interned once: a batch reads them each time */

int fp_blob_init(Context *c, PyObject *zone) {
    c->turns = NULL;
    if (!s_turns && !(s_turns = PyUnicode_InternFromString("turns")))
        return -1;
    if (!s_counters && !(s_counters = PyUnicode_InternFromString("counters")))
        return -1;
    PyObject *turns = PyObject_GetAttr(zone, s_turns);
    if (!turns) {  /* a zone without name blobs (another release's zone module): fine */
        if (!PyErr_ExceptionMatches(PyExc_AttributeError))
            return -1;
        PyErr_Clear();
        return 0;
    }
    c->turns = PyObject_GetAttr(turns, s_counters);
    Py_DECREF(turns);
    if (c->turns && !PyByteArray_Check(c->turns)) {
        Py_CLEAR(c->turns);
        PyErr_SetString(PyExc_TypeError, "zone.turns.counters must be a bytearray");
    }
    return c->turns ? 0 : -1;
}

/* A blob's answer for one query (dnsserver.nameblob): where its octets are. */
typedef struct {
    Py_ssize_t offset, length;  /* the body (a rotating answer's ring) */
    long records, count;        /* count >= 2: it rotates */
    Py_ssize_t stride, size;
    Py_ssize_t slot;
    Py_ssize_t target;          /* SRV: the target's length (its records end with it) */
} BlobAnswer;

#define SRV_FIXED 18  /* an SRV record less its target (dnsserver.nameblob.SRV_FIXED) */

static unsigned read_u16(const unsigned char *p) { return p[0] | (p[1] << 8); }

/*
 * The answer of `qtype` in `blob` at a name of `key_len` octets: 1 and `*out` filled, 0
 * when it has none (NODATA), -1 with an exception for a malformed blob.
 */
static int blob_pick(PyObject *blob, Py_ssize_t key_len, long qtype, BlobAnswer *out) {
    const unsigned char *b = (const unsigned char *)PyBytes_AS_STRING(blob);
    Py_ssize_t n = PyBytes_GET_SIZE(blob);
    if (n < 3)
        goto malformed;
    unsigned have = key_len == b[0] ? b[1] : (b[1] & 4u);
    unsigned bit = qtype == 255 ? (have & (0u - have)) : qtype == 1 ? (have & 1u)
                 : qtype == 28 ? (have & 2u) : qtype == 33 ? (have & 4u) : 0u;
    if (!bit)
        return 0;
    Py_ssize_t pos = 3;
    for (unsigned each = 1; each < bit; each <<= 1) {
        if (b[1] & each) {
            if (pos + 6 > n)
                goto malformed;
            pos += b[pos + 5] > 1 ? 14 : 6;
        }
    }
    if (pos + 6 > n)
        goto malformed;
    out->offset = read_u16(b + pos);
    out->length = read_u16(b + pos + 2);
    out->records = b[pos + 4];
    out->count = b[pos + 5];
    out->stride = 0;
    out->size = out->length;
    out->slot = -1;
    out->target = 0;
    if (bit == 4u) {  /* SRV: each record of SRV_FIXED octets gets the target after it */
        out->target = b[2];
        if (out->target > key_len || out->count > 1 || out->length != out->records * SRV_FIXED)
            goto malformed;
        out->size = out->records * (SRV_FIXED + out->target);
    }
    if (out->count > 1) {
        if (pos + 14 > n)
            goto malformed;
        out->stride = read_u16(b + pos + 6);
        out->size = read_u16(b + pos + 8);
        out->slot = (Py_ssize_t)(read_u16(b + pos + 10) | ((unsigned long)read_u16(b + pos + 12) << 16));
        if (out->size > out->length || (out->count - 1) * out->stride >= out->length)
            goto malformed;
    }
    if (out->offset + out->length > n)
        goto malformed;
    return 1;
malformed:
    PyErr_SetString(PyExc_TypeError, "malformed name blob");
    return -1;
}

/*
 * Writes the response carrying a blob's answer into `out`, its rotation counter advanced:
 * as write_reply does for an Answer. Returns its length, 0 when it does not fit the limit
 * (never, for a blob the zone built), -1 with an exception set.
 */
static Py_ssize_t write_blob(Context *c, const unsigned char *q, const Query *query,
                             PyObject *blob, const BlobAnswer *a, const unsigned char *key,
                             unsigned char *out) {
    Py_ssize_t key_len = query->name_end - 11;
    static const unsigned char edns_tail[OPT_LEN] = {0, 0, TYPE_OPT, MAX_UDP_PAYLOAD >> 8,
                                                     MAX_UDP_PAYLOAD & 0xFF, 0, 0, 0, 0, 0, 0};
    Py_ssize_t qend = query->qend;
    Py_ssize_t total = qend + a->size + (query->edns ? OPT_LEN : 0);
    if (total > query->limit || total > FP_OUT_SIZE)
        return 0;
    const char *body = PyBytes_AS_STRING(blob) + a->offset;
    Py_ssize_t start = 0;
    if (a->count > 1) {
        if (!c->turns || (a->slot + 1) * 4 > PyByteArray_GET_SIZE(c->turns)) {
            PyErr_SetString(PyExc_TypeError, "name blob counter beyond zone.turns (or none)");
            return -1;
        }
        unsigned char *counter = (unsigned char *)PyByteArray_AS_STRING(c->turns) + a->slot * 4;
        unsigned long turn = counter[0] | (counter[1] << 8) | ((unsigned long)counter[2] << 16) |
                             ((unsigned long)counter[3] << 24);
        turn = (turn + 1) % (unsigned long)a->count;
        counter[0] = turn & 0xFF;
        counter[1] = (turn >> 8) & 0xFF;
        counter[2] = (turn >> 16) & 0xFF;
        counter[3] = (turn >> 24) & 0xFF;
        start = (Py_ssize_t)turn * a->stride;
    }
    out[0] = q[0];
    out[1] = q[1];
    out[2] = 0x84 | (q[2] & 0x01);
    out[3] = 0;
    out[4] = 0;
    out[5] = 1;
    out[6] = (unsigned char)(a->records >> 8);
    out[7] = (unsigned char)(a->records & 0xFF);
    out[8] = 0;
    out[9] = 0;
    out[10] = 0;
    out[11] = (unsigned char)query->edns;
    memcpy(out + 12, q + 12, qend - 12);
    /* The rotation's octets: to the end of the ring, then from its start (a wrap). */
    if (a->target) {  /* SRV records, each followed by the target: the key's end */
        unsigned char *at = out + qend;
        for (long i = 0; i < a->records; i++) {
            memcpy(at, body + i * SRV_FIXED, SRV_FIXED);
            memcpy(at + SRV_FIXED, key + key_len - a->target, a->target);
            at += SRV_FIXED + a->target;
        }
    } else {
        Py_ssize_t first = a->length - start < a->size ? a->length - start : a->size;
        memcpy(out + qend, body + start, first);
        memcpy(out + qend + first, body, a->size - first);
    }
    if (query->edns)
        memcpy(out + qend + a->size, edns_tail, OPT_LEN);
    return total;
}


Py_ssize_t fp_blob_answer(Context *c, const unsigned char *q, const Query *query,
                          PyObject *blob, const unsigned char *key, unsigned char *out) {
    BlobAnswer a;
    int found = blob_pick(blob, query->name_end - 11, query->qtype, &a);
    if (found <= 0)
        return found < 0 ? -1 : -2;
    Py_INCREF(blob);  /* borrowed from the table; counting touches a dict */
    Py_ssize_t written = -1;
    if (fp_count_answer(c, query->qtype, 0, 1) == 0) {
        written = write_blob(c, q, query, blob, &a, key, out);
        /* Needs cutting (not for a blob the zone built): undo the count and hand over. */
        if (written == 0 && fp_count_answer(c, query->qtype, 0, -1) < 0)
            written = -1;
    }
    Py_DECREF(blob);
    return written;
}

