/*
 * The UDP fast path of meshd's DNS server: batches of queries in, batches of answers out.
 *
 * Theory of operation. The answers are built in Python when data changes (dnsserver.zone);
 * per query there is only header checking, a table lookup and byte copies. In pure Python
 * the kernel round trip dominates: one recvfrom and one sendto system call per query, each
 * through the event loop. This module does the same per-query work as
 * dnsserver.query.respond, but reads up to BATCH datagrams with one recvmmsg(2) and sends
 * the answers with one sendmmsg(2), from the event loop's readable callback.
 *
 * Only the common shape of query is answered here: a QUERY with one question of class IN,
 * no answer or authority records, at most one additional record that is a well-formed EDNS
 * version 0 OPT, a name found in the zone (or NXDOMAIN/SERVFAIL inside it), and an answer
 * that fits the client's limit. Anything else (errors, REFUSED, truncation, zone transfers)
 * goes to the Python function given as `slow`, which is dnsserver.query.respond itself, so
 * the two paths cannot disagree on the rules; tests compare them byte for byte.
 *
 * The counters are the same Python objects respond() updates (QueryStats.answered and
 * Answer.turn), so metrics and rotation do not depend on which path answered.
 *
 * The zone's type tables are tuples indexed by dnsserver.answer.TYPE_SLOTS (type_slot below
 * must number the types the same way), and a rotating answer sends a slice of its body
 * (Answer.rotation: stride, count, size), as dnsserver.answer describes.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>

#define BATCH 64
#define RECV_SIZE 4096
#define OUT_SIZE 4096
#define PLAIN_UDP_LIMIT 512
#define MAX_UDP_PAYLOAD 1232
#define OPT_LEN 11
#define TYPE_OPT 41
#define TYPE_IXFR 251
#define TYPE_AXFR 252

static struct mmsghdr in_msgs[BATCH];
static struct mmsghdr out_msgs[BATCH];
static struct iovec in_iov[BATCH];
static struct iovec out_iov[BATCH];
static struct sockaddr_storage addrs[BATCH];
static unsigned char in_buf[BATCH][RECV_SIZE];
static unsigned char out_buf[BATCH][OUT_SIZE];

static PyObject *s_table, *s_nodata, *s_nxdomain, *s_servfail, *s_synced, *s_rotation,
    *s_body, *s_heads, *s_edns_tail, *s_rcode, *s_answered, *s_turn, *s_send_dropped;

/* What the zone and the stats object give us for one batch (borrowed or owned refs). */
typedef struct {
    PyObject *table;     /* owned */
    PyObject *nodata;    /* owned */
    PyObject *miss;      /* owned: nxdomain once synced, else servfail */
    PyObject *answered;  /* owned */
    PyObject *stats;     /* borrowed */
    PyObject *zone;      /* borrowed */
    PyObject *slow;      /* borrowed */
} Context;

static void context_clear(Context *c) {
    Py_CLEAR(c->table);
    Py_CLEAR(c->nodata);
    Py_CLEAR(c->miss);
    Py_CLEAR(c->answered);
}

static int context_init(Context *c, PyObject *zone, PyObject *stats, PyObject *slow) {
    memset(c, 0, sizeof(*c));
    c->zone = zone;
    c->stats = stats;
    c->slow = slow;
    c->table = PyObject_GetAttr(zone, s_table);
    c->nodata = PyObject_GetAttr(zone, s_nodata);
    c->answered = PyObject_GetAttr(stats, s_answered);
    PyObject *synced = PyObject_GetAttr(zone, s_synced);
    if (!c->table || !c->nodata || !c->answered || !synced) {
        Py_XDECREF(synced);
        context_clear(c);
        return -1;
    }
    int is_synced = PyObject_IsTrue(synced);
    Py_DECREF(synced);
    c->miss = PyObject_GetAttr(zone, is_synced ? s_nxdomain : s_servfail);
    if (!c->miss || !PyDict_Check(c->table) || !PyDict_Check(c->answered)) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "zone.table and stats.answered must be dicts");
        context_clear(c);
        return -1;
    }
    return 0;
}

/* stats.answered[qtype << 8 | rcode] += by (an int key: nothing for the GC to track) */
static int count_answer_by(Context *c, long qtype, PyObject *rcode, long by) {
    long rc = PyLong_AsLong(rcode);
    if (rc == -1 && PyErr_Occurred())
        return -1;
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

static int count_answer(Context *c, long qtype, PyObject *rcode) {
    return count_answer_by(c, qtype, rcode, 1);
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
 * Where the octets to send start in the body of `answer`, and how many: the whole body, or
 * for a rotating answer the next rotation, advancing its turn as respond() does. Returns -1
 * with a Python exception set.
 */
static int pick_rotation(PyObject *answer, Py_ssize_t body_len, Py_ssize_t *start,
                         Py_ssize_t *size) {
    *start = 0;
    *size = body_len;
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
    PyObject *next_obj = next >= 0 ? PyLong_FromLong(next) : NULL;
    if (!next_obj || PyObject_SetAttr(answer, s_turn, next_obj) < 0) {
        Py_XDECREF(next_obj);
        return -1;
    }
    Py_DECREF(next_obj);
    if (count < 1 || stride < 0 || length < 0) {
        PyErr_SetString(PyExc_TypeError, "malformed Answer.rotation");
        return -1;
    }
    *start = (Py_ssize_t)((next % count) * stride);
    *size = (Py_ssize_t)length;
    if (*start + *size > body_len) {
        PyErr_SetString(PyExc_TypeError, "Answer.rotation beyond its body");
        return -1;
    }
    return 0;
}

/*
 * Answer one query on the fast path. Returns the response length written to `out`, 0 to
 * hand the query to the slow path, or -1 with a Python exception set.
 */
static Py_ssize_t fast_answer(Context *c, const unsigned char *q, Py_ssize_t n,
                              unsigned char *out) {
    if (n < 12 || (q[2] & 0xF8) != 0)
        return 0;  /* short, a response, or an opcode other than QUERY */
    static const unsigned char one_question[7] = {0, 1, 0, 0, 0, 0, 0};
    if (memcmp(q + 4, one_question, 7) != 0 || q[11] > 1)
        return 0;
    Py_ssize_t i = 12;
    while (i < n) {
        unsigned char length = q[i];
        if (length == 0 || length > 63)
            break;
        i += length + 1;
    }
    if (i >= n || q[i] != 0 || i - 11 > 255 || i + 5 > n)
        return 0;
    long qtype = (q[i + 1] << 8) | q[i + 2];
    if (q[i + 3] != 0 || q[i + 4] != 1 || qtype == TYPE_AXFR || qtype == TYPE_IXFR)
        return 0;
    Py_ssize_t qend = i + 5;
    int edns = 0;
    Py_ssize_t limit = PLAIN_UDP_LIMIT;
    if (q[11]) {
        if (qend + OPT_LEN > n || q[qend] != 0 || q[qend + 1] != 0 || q[qend + 2] != TYPE_OPT)
            return 0;
        if (qend + OPT_LEN + ((q[qend + 9] << 8) | q[qend + 10]) > n || q[qend + 6] != 0)
            return 0;
        edns = 1;
        Py_ssize_t advertised = (q[qend + 3] << 8) | q[qend + 4];
        limit = advertised < PLAIN_UDP_LIMIT ? PLAIN_UDP_LIMIT
              : advertised > MAX_UDP_PAYLOAD ? MAX_UDP_PAYLOAD : advertised;
    }
    unsigned char key[256];
    Py_ssize_t key_len = i - 11;
    for (Py_ssize_t k = 0; k < key_len; k++) {
        unsigned char ch = q[12 + k];
        key[k] = (ch >= 'A' && ch <= 'Z') ? (unsigned char)(ch + 32) : ch;
    }
    PyObject *key_obj = PyBytes_FromStringAndSize((const char *)key, key_len);
    if (!key_obj)
        return -1;
    PyObject *types = PyDict_GetItemWithError(c->table, key_obj);
    Py_DECREF(key_obj);
    PyObject *found;
    if (types) {
        /* A type table is a tuple (anything else answers NODATA, as an empty one does). */
        Py_ssize_t slot = type_slot(qtype);
        found = NULL;
        if (slot >= 0 && PyTuple_Check(types) && slot < PyTuple_GET_SIZE(types))
            found = PyTuple_GET_ITEM(types, slot);
        if (!found || found == Py_None)
            found = c->nodata;
    } else if (PyErr_Occurred()) {
        return -1;
    } else {
        return 0;  /* outside the zone (REFUSED) or NXDOMAIN: the slow path checks which */
    }
    PyObject *rcode = PyObject_GetAttr(found, s_rcode);
    if (!rcode)
        return -1;
    if (count_answer(c, qtype, rcode) < 0) {
        Py_DECREF(rcode);
        return -1;
    }
    Py_DECREF(rcode);
    PyObject *answer = found;
    Py_INCREF(answer);
    PyObject *body = PyObject_GetAttr(answer, s_body);
    PyObject *heads = PyObject_GetAttr(answer, s_heads);
    PyObject *tail = edns ? PyObject_GetAttr(answer, s_edns_tail) : NULL;
    Py_ssize_t written = -1;
    if (!body || !heads || (edns && !tail) || !PyBytes_Check(body) || !PyTuple_Check(heads))
        goto done;
    Py_ssize_t start, body_len;
    if (pick_rotation(answer, PyBytes_GET_SIZE(body), &start, &body_len) < 0)
        goto done;
    int rd = q[2] & 0x01;
    PyObject *head = PyTuple_GET_ITEM(heads, rd | (edns << 1));
    Py_ssize_t tail_len = edns ? PyBytes_GET_SIZE(tail) : 0;
    Py_ssize_t total = qend + body_len + tail_len;
    if (total > limit || total > OUT_SIZE || PyBytes_GET_SIZE(head) != 10) {
        /* Needs cutting: undo the count (the slow path counts it again) and hand over. */
        written = 0;
        goto undo;
    }
    out[0] = q[0];
    out[1] = q[1];
    memcpy(out + 2, PyBytes_AS_STRING(head), 10);
    memcpy(out + 12, q + 12, qend - 12);
    memcpy(out + qend, PyBytes_AS_STRING(body) + start, body_len);
    if (edns)
        memcpy(out + qend + body_len, PyBytes_AS_STRING(tail), tail_len);
    written = total;
    goto done;
undo: {
        PyObject *rc = PyObject_GetAttr(found, s_rcode);
        if (!rc || count_answer_by(c, qtype, rc, -1) < 0)
            written = -1;
        Py_XDECREF(rc);
    }
done:
    Py_XDECREF(body);
    Py_XDECREF(heads);
    Py_XDECREF(tail);
    Py_DECREF(answer);
    if (written < 0 && !PyErr_Occurred())
        PyErr_SetString(PyExc_TypeError, "malformed Answer object");
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
        if (!PyBytes_Check(reply) || PyBytes_GET_SIZE(reply) > OUT_SIZE) {
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

static Py_ssize_t answer_one(Context *c, const unsigned char *q, Py_ssize_t n,
                             unsigned char *out) {
    Py_ssize_t length = fast_answer(c, q, n, out);
    if (length == 0 && !PyErr_Occurred())
        length = slow_answer(c, q, n, out);
    return length;
}

/* answer(zone, query, stats, slow) -> bytes | None: one query, for tests. */
static PyObject *fp_answer(PyObject *self, PyObject *args) {
    PyObject *zone, *stats, *slow;
    Py_buffer query;
    if (!PyArg_ParseTuple(args, "Oy*OO", &zone, &query, &stats, &slow))
        return NULL;
    Context c;
    if (context_init(&c, zone, stats, slow) < 0) {
        PyBuffer_Release(&query);
        return NULL;
    }
    static unsigned char out[OUT_SIZE];
    Py_ssize_t length = answer_one(&c, query.buf, query.len, out);
    PyBuffer_Release(&query);
    context_clear(&c);
    if (length < 0)
        return NULL;
    if (length == 0)
        Py_RETURN_NONE;
    return PyBytes_FromStringAndSize((const char *)out, length);
}

static int bump(PyObject *stats, PyObject *name, long by) {
    PyObject *old = PyObject_GetAttr(stats, name);
    if (!old)
        return -1;
    PyObject *value = PyLong_FromLong(PyLong_AsLong(old) + by);
    Py_DECREF(old);
    int rc = value ? PyObject_SetAttr(stats, name, value) : -1;
    Py_XDECREF(value);
    return rc;
}

/* Send the `count` answers prepared in out_msgs; what the kernel refuses is counted. */
static int send_batch(PyObject *stats, int fd, unsigned int count) {
    unsigned int sent = 0;
    while (sent < count) {
        int r = sendmmsg(fd, out_msgs + sent, count - sent, MSG_DONTWAIT);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            /* EAGAIN (socket buffer full) or a per-destination error: drop the first, as a
               full network would, and go on with the rest. */
            if (bump(stats, s_send_dropped, 1) < 0)
                return -1;
            sent += 1;
            continue;
        }
        sent += (unsigned int)r;
    }
    return 0;
}

/* An exception while answering one query: hand it to on_error(exc) and go on with the
   batch, so one bad query costs only itself. Returns -1 only if on_error itself fails. */
static int report_error(PyObject *on_error) {
    PyObject *type, *value, *traceback;
    PyErr_Fetch(&type, &value, &traceback);
    PyErr_NormalizeException(&type, &value, &traceback);
    if (traceback && value)
        PyException_SetTraceback(value, traceback);
    PyObject *result = PyObject_CallOneArg(on_error, value ? value : Py_None);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(traceback);
    if (!result)
        return -1;
    Py_DECREF(result);
    return 0;
}

/*
 * serve(fd, zone, stats, slow, on_error, max_batches) -> int: answer what is waiting on the
 * UDP socket `fd`, at most max_batches recvmmsg rounds (so other callbacks get their turn);
 * returns the number of datagrams read.
 */
static PyObject *fp_serve(PyObject *self, PyObject *args) {
    int fd, max_batches;
    PyObject *zone, *stats, *slow, *on_error;
    if (!PyArg_ParseTuple(args, "iOOOOi", &fd, &zone, &stats, &slow, &on_error, &max_batches))
        return NULL;
    Context c;
    if (context_init(&c, zone, stats, slow) < 0)
        return NULL;
    long total = 0;
    for (int round = 0; round < max_batches; round++) {
        for (int k = 0; k < BATCH; k++) {
            in_iov[k].iov_base = in_buf[k];
            in_iov[k].iov_len = RECV_SIZE;
            memset(&in_msgs[k].msg_hdr, 0, sizeof(struct msghdr));
            in_msgs[k].msg_hdr.msg_iov = &in_iov[k];
            in_msgs[k].msg_hdr.msg_iovlen = 1;
            in_msgs[k].msg_hdr.msg_name = &addrs[k];
            in_msgs[k].msg_hdr.msg_namelen = sizeof(addrs[k]);
        }
        int got = recvmmsg(fd, in_msgs, BATCH, MSG_DONTWAIT, NULL);
        if (got < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ||
                errno == ECONNREFUSED)
                break;
            context_clear(&c);
            return PyErr_SetFromErrno(PyExc_OSError);
        }
        unsigned int ready = 0;
        for (int k = 0; k < got; k++) {
            Py_ssize_t n = in_msgs[k].msg_len;
            if (in_msgs[k].msg_hdr.msg_flags & MSG_TRUNC)
                n = RECV_SIZE;  /* longer than any query we answer: respond() rejects it */
            Py_ssize_t length = answer_one(&c, in_buf[k], n, out_buf[ready]);
            if (length < 0) {
                if (report_error(on_error) < 0) {
                    context_clear(&c);
                    return NULL;
                }
                continue;
            }
            if (length == 0)
                continue;
            out_iov[ready].iov_base = out_buf[ready];
            out_iov[ready].iov_len = (size_t)length;
            memset(&out_msgs[ready].msg_hdr, 0, sizeof(struct msghdr));
            out_msgs[ready].msg_hdr.msg_iov = &out_iov[ready];
            out_msgs[ready].msg_hdr.msg_iovlen = 1;
            out_msgs[ready].msg_hdr.msg_name = &addrs[k];
            out_msgs[ready].msg_hdr.msg_namelen = in_msgs[k].msg_hdr.msg_namelen;
            ready++;
        }
        if (ready && send_batch(stats, fd, ready) < 0) {
            context_clear(&c);
            return NULL;
        }
        total += got;
        if (got < BATCH)
            break;
    }
    context_clear(&c);
    return PyLong_FromLong(total);
}

static PyMethodDef methods[] = {
    {"serve", fp_serve, METH_VARARGS, "Answer the queries waiting on a UDP socket."},
    {"answer", fp_answer, METH_VARARGS, "Answer one query (the same path, for tests)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "dnsserver._fastpath",
    "recvmmsg/sendmmsg fast path of the DNS server", -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fastpath(void) {
#define INTERN(var, text) if (!(var = PyUnicode_InternFromString(text))) return NULL
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
    INTERN(s_send_dropped, "send_dropped");
#undef INTERN
    return PyModule_Create(&module);
}
