/*
 * What the two halves of the DNS fast path share (one extension, dnsserver._fastpath):
 *
 *   _fastpath_answer.c  answers one query from the zone's pre-built answers, as
 *                       dnsserver.query.respond does, or hands it to respond;
 *   _fastpath_blob.c    answers from a plain name's answers held in one bytes object;
 *   _fastpath_plain.c   builds the commonest name blob (a plain service's) in one call;
 *   _fastpath_batch.c   reads batches of queries with recvmmsg(2), answers each through
 *                       _fastpath_answer.c and sends the answers with sendmmsg(2); it also
 *                       defines the module;
 *   _fastpath_sched.c   the answering thread's scheduler time slice.
 *
 * setup.py compiles them into the one extension; the Makefile's set-up stamp and
 * MANIFEST.in name these files.
 */
#ifndef MESHD_FASTPATH_H
#define MESHD_FASTPATH_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

/* The largest answer the fast path writes: every UDP answer fits (at most 1,232 octets). */
#define FP_OUT_SIZE 4096

/* What the zone and the stats object give us for one batch (borrowed or owned refs). */
typedef struct {
    PyObject *table;     /* owned */
    PyObject *nodata;    /* owned */
    PyObject *miss;      /* owned: nxdomain once synced, else servfail */
    PyObject *answered;  /* owned */
    PyObject *turns;     /* owned: zone.turns.counters, a bytearray (dnsserver.nameblob);
                            NULL for a zone without name blobs */
    PyObject *stats;     /* borrowed */
    PyObject *zone;      /* borrowed */
    PyObject *slow;      /* borrowed */
} Context;

#define PLAIN_UDP_LIMIT 512
#define MAX_UDP_PAYLOAD 1232
#define OPT_LEN 11
#define TYPE_OPT 41

/* Where the parts of a query of the common shape are. */
typedef struct {
    Py_ssize_t name_end;  /* offset of the question name's root label */
    Py_ssize_t qend;      /* first octet after the question */
    long qtype;
    int edns;             /* 1 when the query carries a valid OPT */
    Py_ssize_t limit;     /* the most octets the response may have */
} Query;

/* stats.answered[qtype << 8 | rcode] += by; 0, or -1 with an exception set. */
int fp_count_answer(Context *c, long qtype, long rcode, long by);

/* Sets c->turns to zone.turns.counters, or to NULL for a zone without it (a zone module
 * without name blobs, as another release's): 0, or -1 with an exception set. */
int fp_blob_init(Context *c, PyObject *zone);

/* Answers a query from a name blob (_fastpath_blob.c) found at `key` (the lower-case name):
 * as fp_answer_one's fast half, or -2 when the blob has no answer of the type (NODATA: the
 * caller sends the zone's). */
Py_ssize_t fp_blob_answer(Context *c, const unsigned char *q, const Query *query,
                          PyObject *blob, const unsigned char *key, unsigned char *out);

/* Interns the attribute names the answering half reads; 0, or -1 with an exception. */
int fp_answer_init(void);

/* Reads zone and stats attributes for one batch; 0, or -1 with an exception set. */
int fp_context_init(Context *c, PyObject *zone, PyObject *stats, PyObject *slow);
void fp_context_clear(Context *c);

/*
 * Answers one query into `out` (FP_OUT_SIZE octets): the fast path when it can, else the
 * slow path (dnsserver.query.respond). Returns the response length, 0 to send nothing, or
 * -1 with a Python exception set.
 */
Py_ssize_t fp_answer_one(Context *c, const unsigned char *q, Py_ssize_t n, unsigned char *out);

/* plain_blob(name, suffix, octets, srv, srv_count, ttl, max_addresses, turns)
 * -> (wire name, blob) | None (_fastpath_plain.c; dnsserver.plainblob). */
PyObject *fp_plain_blob(PyObject *self, PyObject *const *args, Py_ssize_t nargs);

/* quad_texts(octets) -> tuple[str, ...] | None (_fastpath_plain.c; dnsserver.plainblob). */
PyObject *fp_quad_texts(PyObject *self, PyObject *octets);

/* set_slice(ns) -> 0 or an errno: the calling thread's EEVDF slice (_fastpath_sched.c). */
PyObject *fp_set_slice(PyObject *self, PyObject *arg);

/* answer(zone, query, stats, slow) -> bytes | None: one query, for tests. */
PyObject *fp_answer(PyObject *self, PyObject *args);

#endif
