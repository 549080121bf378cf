/*
 * The commonest name blob of a zone built in one call: a plain ClusterSetIP service whose
 * addresses are all IPv4 and given as octets, with one SRV answer shared by every SRV owner
 * (dnsserver.plainblob, whose pure-Python twin `build` is this function's oracle in the
 * property tests and stands in for it where the extension is absent).
 *
 * Theory of operation. A catch-up encodes every service of the clusterset at once, and
 * for most of them the answers are the same few records around a different name and
 * different octets: the A records (12-octet head, 4 octets each), rotating when there are
 * two or more, and the SRV records less their target, which the caller's cached plan made.
 * plain_blob(name, suffix, octets, srv, srv_count, ttl, max_addresses, turns) checks the
 * service's name as dnsserver.plain._service_name does, builds the A part as
 * dnsserver.plain._address_part does, takes a rotation counter slot with turns.take()
 * (only once every check passed, as nameblob.pack_address_srv does) and writes the blob
 * in the layout dnsserver.nameblob describes (the head nameblob.pack_address_srv packs).
 * It returns (the service's wire name, the blob), or None for every service it does not
 * cover (the caller then encodes it the general way): a name that cannot be encoded, no
 * address, an A answer that would need cut points (none shown, or over NEVER_CUT octets),
 * a ring too long for a blob, a TTL outside 32 bits. It raises only for arguments of the
 * wrong type (a bug of the caller's) or what turns.take() raises.
 *
 * quad_texts (below) makes the dotted-quad texts of a service's packed IPv4 addresses for
 * the routing policy's plain shortcut, in one call.
 */
#include "_fastpath.h"

#include <string.h>

/* dnsserver.answer.NEVER_CUT, dnsserver.records.MAX_ROTATIONS, dnsserver.nameblob's
 * MAX_BODIES and HAS_A | HAS_SRV; tests/unit/test_plainblob.py checks they agree. */
#define NEVER_CUT 230
#define MAX_ROTATIONS 64
#define MAX_BODIES 65260
#define HAS_A_SRV 5
#define A_RECORD 16  /* owner pointer, type, class, TTL, RDLENGTH (12), address (4) */
#define HEAD_ROTATING 23
#define HEAD_FIXED 15

static void put_u16(unsigned char *p, Py_ssize_t v) {
    p[0] = (unsigned char)(v & 0xFF);
    p[1] = (unsigned char)((v >> 8) & 0xFF);
}

static void put_u32(unsigned char *p, unsigned long v) {
    put_u16(p, (Py_ssize_t)(v & 0xFFFF));
    put_u16(p + 2, (Py_ssize_t)((v >> 16) & 0xFFFF));
}

/* The wire name `len(raw) raw suffix` of a service (lower case), or NULL (no exception)
 * when it cannot be encoded, as dnsserver.plain._service_name. */
static PyObject *service_name(PyObject *name, const char *suffix, Py_ssize_t suffix_len) {
    if (!PyUnicode_IS_ASCII(name))
        return NULL;
    Py_ssize_t n = PyUnicode_GET_LENGTH(name);
    if (n < 1 || n > 63 || 1 + n + suffix_len > 255)
        return NULL;
    const char *raw = (const char *)PyUnicode_1BYTE_DATA(name);
    if (memchr(raw, '.', (size_t)n))
        return NULL;
    PyObject *out = PyBytes_FromStringAndSize(NULL, 1 + n + suffix_len);
    if (!out)
        return NULL;
    char *p = PyBytes_AS_STRING(out);
    p[0] = (char)n;
    for (Py_ssize_t i = 0; i < n; i++) {
        char ch = raw[i];
        p[1 + i] = (ch >= 'A' && ch <= 'Z') ? (char)(ch + 32) : ch;
    }
    memcpy(p + 1 + n, suffix, (size_t)suffix_len);
    return out;
}

/* What a blob's layout depends on (see nameblob): the sizes and the A ring's rotations. */
typedef struct {
    Py_ssize_t end;       /* the service's wire name's length */
    Py_ssize_t head;      /* HEAD_FIXED or HEAD_ROTATING */
    Py_ssize_t body_len;  /* the A records written */
    Py_ssize_t fixed_len; /* the SRV records less their target */
    long long shown, srv_count, ttl;
    Py_ssize_t count, step;  /* rotations (0 or 1: fixed) and the records between two */
    unsigned long slot;      /* the rotation counter's slot (rotating only) */
} Layout;

/* turns.take() as a 32-bit slot; -1 with an exception set when it fails. */
static int take_slot(PyObject *turns, unsigned long *slot) {
    PyObject *taken = PyObject_CallMethod(turns, "take", NULL);
    if (!taken)
        return -1;
    *slot = PyLong_AsUnsignedLong(taken);
    Py_DECREF(taken);
    if (!PyErr_Occurred() && *slot > 0xFFFFFFFFUL)  /* as struct.pack("<I") refuses */
        PyErr_SetString(PyExc_OverflowError, "a rotation counter slot over 32 bits");
    return PyErr_Occurred() ? -1 : 0;
}

/* The blob's head, its A records (each a pointer to the question's name, A, IN, the TTL,
 * 4, its octets) and the SRV records, into b (head + body_len + fixed_len octets). */
static void write_blob(unsigned char *b, const Layout *l, const unsigned char *o,
                       const char *srv) {
    b[0] = (unsigned char)l->end;
    b[1] = HAS_A_SRV;
    b[2] = (unsigned char)l->end;
    /* The A entry: offset, length, records shown, rotation count (see nameblob). */
    put_u16(b + 3, l->head);
    put_u16(b + 5, l->body_len);
    b[7] = (unsigned char)l->shown;
    if (l->count >= 2) {
        b[8] = (unsigned char)l->count;
        put_u16(b + 9, l->step * A_RECORD);  /* stride */
        put_u16(b + 11, (Py_ssize_t)l->shown * A_RECORD);  /* size */
        put_u32(b + 13, l->slot);
    } else {
        b[8] = 0;
    }
    /* The SRV entry, after the A entry. */
    unsigned char *e = b + l->head - 6;
    put_u16(e, l->head + l->body_len);
    put_u16(e + 2, l->fixed_len);
    e[4] = (unsigned char)l->srv_count;
    e[5] = 0;
    unsigned char *r = b + l->head;
    long long ttl = l->ttl;
    Py_ssize_t records = l->body_len / A_RECORD;
    for (Py_ssize_t i = 0; i < records; i++, r += A_RECORD) {
        r[0] = 0xC0, r[1] = 0x0C, r[2] = 0, r[3] = 1, r[4] = 0, r[5] = 1;
        r[6] = (unsigned char)(ttl >> 24), r[7] = (unsigned char)(ttl >> 16);
        r[8] = (unsigned char)(ttl >> 8), r[9] = (unsigned char)ttl;
        r[10] = 0, r[11] = 4;
        memcpy(r + 12, o + 4 * i, 4);
    }
    memcpy(r, srv, (size_t)l->fixed_len);
}

/* The layout of the blob of n addresses, or 0 when the service is not covered (the caller
 * returns None): the checks plain_blob's docstring lists, but the name's. */
static int plan_layout(Layout *l, PyObject *const *args, Py_ssize_t octets_len,
                       Py_ssize_t fixed_len) {
    int overflow = 0;
    l->srv_count = PyLong_AsLongLongAndOverflow(args[4], &overflow);
    if (overflow || l->srv_count < 1 || l->srv_count > 255)
        return 0;
    l->ttl = PyLong_AsLongLongAndOverflow(args[5], &overflow);
    if (overflow || l->ttl < 0 || l->ttl > 0xFFFFFFFFLL)
        return 0;
    long long max_addresses = PyLong_AsLongLongAndOverflow(args[6], &overflow);
    if (overflow)  /* shown is the smaller of it and the count: a huge one shows them all */
        max_addresses = overflow > 0 ? 0x7FFFFFFFLL : 0;
    Py_ssize_t n = octets_len / 4;
    if (n < 1 || octets_len % 4)
        return 0;
    l->shown = max_addresses < n ? max_addresses : n;
    if (l->shown < 1 || l->shown * A_RECORD > NEVER_CUT)
        return 0;  /* it needs cut points: an Answer, not a blob */
    Py_ssize_t ring = n * A_RECORD;
    if (ring > MAX_BODIES)
        return 0;  /* not rings_fit */
    if (fixed_len > 0xFFFF - HEAD_ROTATING - MAX_BODIES)
        return 0;
    l->fixed_len = fixed_len;
    l->step = (n + MAX_ROTATIONS - 1) / MAX_ROTATIONS;
    l->count = (n + l->step - 1) / l->step;
    l->body_len = l->count < 2 ? (Py_ssize_t)l->shown * A_RECORD : ring;
    l->head = l->count < 2 ? HEAD_FIXED : HEAD_ROTATING;
    l->slot = 0;
    return 1;
}

PyObject *fp_plain_blob(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError, "plain_blob takes 8 arguments");
        return NULL;
    }
    PyObject *name = args[0], *suffix = args[1], *octets = args[2], *srv = args[3];
    if (!PyUnicode_Check(name) || !PyBytes_Check(suffix) || !PyBytes_Check(octets) ||
        !PyBytes_Check(srv) || !PyLong_Check(args[4]) || !PyLong_Check(args[5]) ||
        !PyLong_Check(args[6])) {
        PyErr_SetString(PyExc_TypeError, "plain_blob(str, bytes, bytes, bytes, int, int, int, turns)");
        return NULL;
    }
    Layout l;
    if (!plan_layout(&l, args, PyBytes_GET_SIZE(octets), PyBytes_GET_SIZE(srv)))
        Py_RETURN_NONE;
    PyObject *wire_name = service_name(name, PyBytes_AS_STRING(suffix), PyBytes_GET_SIZE(suffix));
    if (!wire_name) {
        if (PyErr_Occurred())
            return NULL;
        Py_RETURN_NONE;
    }
    l.end = PyBytes_GET_SIZE(wire_name);
    PyObject *blob = NULL;
    if (l.count >= 2 && take_slot(args[7], &l.slot) < 0)
        goto fail;
    blob = PyBytes_FromStringAndSize(NULL, l.head + l.body_len + l.fixed_len);
    if (!blob)
        goto fail;
    write_blob((unsigned char *)PyBytes_AS_STRING(blob), &l,
               (const unsigned char *)PyBytes_AS_STRING(octets), PyBytes_AS_STRING(srv));
    PyObject *out = PyTuple_New(2);
    if (!out)
        goto fail;
    PyTuple_SET_ITEM(out, 0, wire_name);
    PyTuple_SET_ITEM(out, 1, blob);
    return out;
fail:
    Py_DECREF(wire_name);
    Py_XDECREF(blob);
    return NULL;
}

/*
 * quad_texts(octets) -> tuple[str, ...] | None: the dotted-quad text of each 4 octets, in
 * order, or None when there are none, they are not a multiple of 4, there are more than
 * QUADS_MAX, or two are the same (the caller then removes duplicates the general way).
 * What mesh.routing.plain needs of a service's packed endpoints (PackedEndpoints.addresses
 * and a check for duplicates) in one call; dnsserver.plainblob.quad_texts is its twin.
 */
#define QUADS_MAX 64

PyObject *fp_quad_texts(PyObject *self, PyObject *octets) {
    if (!PyBytes_Check(octets)) {
        PyErr_SetString(PyExc_TypeError, "quad_texts takes bytes");
        return NULL;
    }
    Py_ssize_t len = PyBytes_GET_SIZE(octets);
    Py_ssize_t n = len / 4;
    if (n < 1 || len % 4 || n > QUADS_MAX)
        Py_RETURN_NONE;
    const unsigned char *o = (const unsigned char *)PyBytes_AS_STRING(octets);
    for (Py_ssize_t i = 1; i < n; i++)
        for (Py_ssize_t j = 0; j < i; j++)
            if (memcmp(o + 4 * i, o + 4 * j, 4) == 0)
                Py_RETURN_NONE;
    PyObject *out = PyTuple_New(n);
    if (!out)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        char text[16];
        const unsigned char *q = o + 4 * i;
        int written = snprintf(text, sizeof text, "%u.%u.%u.%u", q[0], q[1], q[2], q[3]);
        PyObject *s = PyUnicode_FromStringAndSize(text, written);
        if (!s) {
            Py_DECREF(out);
            return NULL;
        }
        PyTuple_SET_ITEM(out, i, s);
    }
    return out;
}
