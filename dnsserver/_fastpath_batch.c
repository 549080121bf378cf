/*
 * The batching half of meshd's DNS fast path: queries in with recvmmsg(2), answers out
 * with sendmmsg(2), and the module dnsserver._fastpath itself.
 *
 * Theory of operation. In pure Python the kernel round trip dominates: one recvfrom and
 * one sendto system call per query, each through the event loop. A Reader is the event
 * loop's readable callback on the UDP socket, itself: the loop calls it with no Python
 * frame in between (at 10,000 queries/s nearly every wakeup carries one query, so a
 * wakeup's fixed cost is a query's). Each call reads up to BATCH datagrams with one
 * recvmmsg, answers each through fp_answer_one (_fastpath_answer.c, which hands what it
 * does not answer itself to dnsserver.query.respond), and sends the answers with one
 * sendmmsg, at most max_batches rounds per call so that other callbacks get their turn.
 * One bad query costs only itself: an exception while answering it goes to on_error and the
 * batch goes on. One call in sample_every is timed, and its time per datagram handed to
 * observe(ns) (the server's latency histogram).
 */
#include "_fastpath.h"

#include <errno.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <netinet/in.h>

#define BATCH 64
#define RECV_SIZE 4096

static struct mmsghdr in_msgs[BATCH];
static struct mmsghdr out_msgs[BATCH];
static struct iovec in_iov[BATCH];
static struct iovec out_iov[BATCH];
static struct sockaddr_storage addrs[BATCH];
static unsigned char in_buf[BATCH][RECV_SIZE];
static unsigned char out_buf[BATCH][FP_OUT_SIZE];

static PyObject *s_send_dropped;

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

/* Point the receive headers at their buffers and address slots for one recvmmsg. */
static void prepare_receive(void) {
    for (int k = 0; k < BATCH; k++) {
        in_iov[k].iov_base = in_buf[k];
        in_iov[k].iov_len = RECV_SIZE;
        memset(&in_msgs[k].msg_hdr, 0, sizeof(struct msghdr));
        in_msgs[k].msg_hdr.msg_iov = &in_iov[k];
        in_msgs[k].msg_hdr.msg_iovlen = 1;
        in_msgs[k].msg_hdr.msg_name = &addrs[k];
        in_msgs[k].msg_hdr.msg_namelen = sizeof(addrs[k]);
    }
}

/* Queue out_buf[slot] (length octets) for the sender of datagram k. */
static void prepare_send(unsigned int slot, int k, Py_ssize_t length) {
    out_iov[slot].iov_base = out_buf[slot];
    out_iov[slot].iov_len = (size_t)length;
    memset(&out_msgs[slot].msg_hdr, 0, sizeof(struct msghdr));
    out_msgs[slot].msg_hdr.msg_iov = &out_iov[slot];
    out_msgs[slot].msg_hdr.msg_iovlen = 1;
    out_msgs[slot].msg_hdr.msg_name = &addrs[k];
    out_msgs[slot].msg_hdr.msg_namelen = in_msgs[k].msg_hdr.msg_namelen;
}

/* Answer the `got` datagrams received and send the answers; 0, or -1 with an exception. */
static int answer_batch(Context *c, int fd, int got, PyObject *on_error) {
    unsigned int ready = 0;
    for (int k = 0; k < got; k++) {
        Py_ssize_t n = in_msgs[k].msg_len;
        if (in_msgs[k].msg_hdr.msg_flags & MSG_TRUNC)
            n = RECV_SIZE;  /* longer than any query we answer: respond() rejects it */
        Py_ssize_t length = fp_answer_one(c, in_buf[k], n, out_buf[ready]);
        if (length < 0) {
            if (report_error(on_error) < 0)
                return -1;
            continue;
        }
        if (length > 0)
            prepare_send(ready++, k, length);
    }
    return ready ? send_batch(c->stats, fd, ready) : 0;
}

/* Answer what is waiting on `fd`, at most max_batches recvmmsg rounds: the datagrams
   read, or -1 with an exception set. */
static long serve(int fd, PyObject *zone, PyObject *stats, PyObject *slow, PyObject *on_error,
                  int max_batches) {
    Context c;
    if (fp_context_init(&c, zone, stats, slow) < 0)
        return -1;
    long total = 0;
    for (int round = 0; round < max_batches; round++) {
        prepare_receive();
        int got = recvmmsg(fd, in_msgs, BATCH, MSG_DONTWAIT, NULL);
        if (got < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ||
                errno == ECONNREFUSED)
                break;
            fp_context_clear(&c);
            PyErr_SetFromErrno(PyExc_OSError);
            return -1;
        }
        if (answer_batch(&c, fd, got, on_error) < 0) {
            fp_context_clear(&c);
            return -1;
        }
        total += got;
        if (got < BATCH)
            break;
    }
    fp_context_clear(&c);
    return total;
}

/*
 * serve(fd, zone, stats, slow, on_error, max_batches) -> int: the same as one Reader call,
 * returning the datagrams read. The readable callback of releases before the Reader: kept
 * so that an older release's Python (a rolling upgrade's mixed ring, tests of one) still
 * answers when it finds this extension, which it does in an editable install.
 */
static PyObject *fp_serve(PyObject *self, PyObject *args) {
    (void)self;
    int fd, max_batches;
    PyObject *zone, *stats, *slow, *on_error;
    if (!PyArg_ParseTuple(args, "iOOOOi", &fd, &zone, &stats, &slow, &on_error, &max_batches))
        return NULL;
    long count = serve(fd, zone, stats, slow, on_error, max_batches);
    return count < 0 ? NULL : PyLong_FromLong(count);
}

/*
 * Reader(fd, zone, stats, slow, on_error, observe, sample_every, max_batches): the UDP
 * socket's readable callback. Calling it answers what is waiting (see serve) and returns
 * None; an error of ours (an exception out of serve) goes to on_error, never to the loop.
 * `zone` may be replaced between calls (DnsServer.zone); `wakeups` counts the calls.
 */
typedef struct {
    PyObject_HEAD
    int fd;
    int max_batches;
    long sample_every;
    long wakeups;
    PyObject *zone, *stats, *slow, *on_error, *observe;
} Reader;

static int reader_init(Reader *self, PyObject *args, PyObject *kwargs) {
    int fd, max_batches;
    long sample_every;
    PyObject *zone, *stats, *slow, *on_error, *observe;
    static char *names[] = {"fd", "zone", "stats", "slow", "on_error", "observe",
                            "sample_every", "max_batches", NULL};
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "iOOOOOli", names, &fd, &zone, &stats,
                                     &slow, &on_error, &observe, &sample_every, &max_batches))
        return -1;
    if (sample_every < 1 || max_batches < 1) {
        PyErr_SetString(PyExc_ValueError, "sample_every and max_batches must be positive");
        return -1;
    }
    self->fd = fd;
    self->max_batches = max_batches;
    self->sample_every = sample_every;
    Py_INCREF(zone);
    Py_XSETREF(self->zone, zone);
    Py_INCREF(stats);
    Py_XSETREF(self->stats, stats);
    Py_INCREF(slow);
    Py_XSETREF(self->slow, slow);
    Py_INCREF(on_error);
    Py_XSETREF(self->on_error, on_error);
    Py_INCREF(observe);
    Py_XSETREF(self->observe, observe);
    return 0;
}

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static PyObject *reader_call(Reader *self, PyObject *args, PyObject *kwargs) {
    if (PyTuple_GET_SIZE(args) || (kwargs && PyDict_GET_SIZE(kwargs))) {
        PyErr_SetString(PyExc_TypeError, "a Reader takes no arguments");
        return NULL;
    }
    if (!self->zone) {
        PyErr_SetString(PyExc_ValueError, "Reader not initialised");
        return NULL;
    }
    self->wakeups += 1;
    int timed = self->wakeups % self->sample_every == 0;
    long long started = timed ? now_ns() : 0;
    /* The callables may drop the last reference to what we hold (a zone replaced by
       on_error, say): hold our own for the call. */
    PyObject *zone = self->zone;
    Py_INCREF(zone);
    long count = serve(self->fd, zone, self->stats, self->slow, self->on_error,
                       self->max_batches);
    Py_DECREF(zone);
    if (count < 0) {
        /* A bug of ours, or the socket failing: on_error counts it; the server goes on.
           What is not an Exception (KeyboardInterrupt, SystemExit) goes to the loop. */
        if (!PyErr_ExceptionMatches(PyExc_Exception))
            return NULL;
        if (report_error(self->on_error) < 0)
            return NULL;
        Py_RETURN_NONE;
    }
    if (timed && count > 0) {
        PyObject *elapsed = PyLong_FromLongLong((now_ns() - started) / count);
        PyObject *result = elapsed ? PyObject_CallOneArg(self->observe, elapsed) : NULL;
        Py_XDECREF(elapsed);
        if (!result)
            return NULL;
        Py_DECREF(result);
    }
    Py_RETURN_NONE;
}

static int reader_traverse(Reader *self, visitproc visit, void *arg) {
    Py_VISIT(self->zone);
    Py_VISIT(self->stats);
    Py_VISIT(self->slow);
    Py_VISIT(self->on_error);
    Py_VISIT(self->observe);
    return 0;
}

static int reader_clear(Reader *self) {
    Py_CLEAR(self->zone);
    Py_CLEAR(self->stats);
    Py_CLEAR(self->slow);
    Py_CLEAR(self->on_error);
    Py_CLEAR(self->observe);
    return 0;
}

static void reader_dealloc(Reader *self) {
    PyObject_GC_UnTrack(self);
    reader_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *reader_get_zone(Reader *self, void *closure) {
    (void)closure;
    if (!self->zone)
        Py_RETURN_NONE;
    Py_INCREF(self->zone);
    return self->zone;
}

static int reader_set_zone(Reader *self, PyObject *zone, void *closure) {
    (void)closure;
    if (!zone) {
        PyErr_SetString(PyExc_AttributeError, "a Reader's zone cannot be deleted");
        return -1;
    }
    Py_INCREF(zone);
    Py_XSETREF(self->zone, zone);
    return 0;
}

static PyObject *reader_get_wakeups(Reader *self, void *closure) {
    (void)closure;
    return PyLong_FromLong(self->wakeups);
}

static PyGetSetDef reader_getset[] = {
    {"zone", (getter)reader_get_zone, (setter)reader_set_zone, "The zone answered from.", NULL},
    {"wakeups", (getter)reader_get_wakeups, NULL, "How many times it was called.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject ReaderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "dnsserver._fastpath.Reader",
    .tp_basicsize = sizeof(Reader),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "The UDP socket's readable callback: answers the queries waiting on it.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)reader_init,
    .tp_call = (ternaryfunc)reader_call,
    .tp_traverse = (traverseproc)reader_traverse,
    .tp_clear = (inquiry)reader_clear,
    .tp_dealloc = (destructor)reader_dealloc,
    .tp_getset = reader_getset,
};

static PyMethodDef methods[] = {
    {"serve", fp_serve, METH_VARARGS,
     "Answer the queries waiting on a UDP socket (an older release's callback)."},
    {"answer", fp_answer, METH_VARARGS, "Answer one query (the same path, for tests)."},
    {"plain_blob", (PyCFunction)(void (*)(void))fp_plain_blob, METH_FASTCALL,
     "A plain service's wire name and name blob (dnsserver.plainblob), or None."},
    {"set_slice", fp_set_slice, METH_O, "This thread's time slice in ns: 0 or the errno."},
    {"quad_texts", fp_quad_texts, METH_O,
     "The dotted quads of packed IPv4 addresses without duplicates, or None."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "dnsserver._fastpath",
    "recvmmsg/sendmmsg fast path of the DNS server", -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fastpath(void) {
    if (fp_answer_init() < 0)
        return NULL;
    if (!(s_send_dropped = PyUnicode_InternFromString("send_dropped")))
        return NULL;
    if (PyType_Ready(&ReaderType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m)
        return NULL;
    Py_INCREF(&ReaderType);
    if (PyModule_AddObject(m, "Reader", (PyObject *)&ReaderType) < 0) {
        Py_DECREF(&ReaderType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
