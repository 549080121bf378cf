/*
 * The UDP socket's readable callback of meshd's DNS fast path (dnsserver._fastpath.Reader),
 * and the older releases' serve(), both around fp_serve_rounds (_fastpath_batch.c).
 *
 * Theory of operation. The event loop calls a Reader with no Python frame in between; each
 * call answers what waits on the socket (at most max_batches recvmmsg rounds), hands an
 * error of ours to on_error and one call in sample_every's time per datagram to observe.
 * The batch buffers are static, so a call must not run inside another: Python code a call
 * runs (respond, on_error, observe) may run a signal handler that calls again
 * (dnsserver.preempt answers queries from SIGIO). That inner call is refused and marks
 * `missed`; the outer one then reads once more (at most MAX_PASSES times in all), so the
 * datagram that signalled is answered at once, not at the next wakeup.
 */
#include "_fastpath.h"

#include <time.h>

/* A call under way (the static buffers in use), and a call refused meanwhile. */
#define MAX_PASSES 8
static int serving, missed;

static long serve(int fd, PyObject *zone, PyObject *stats, PyObject *slow, PyObject *on_error,
                  int max_batches) {
    if (serving) {
        missed = 1;
        return 0;
    }
    serving = 1;
    long total = 0;
    for (int pass = 0; pass < MAX_PASSES; pass++) {
        missed = 0;
        long count = fp_serve_rounds(fd, zone, stats, slow, on_error, max_batches);
        if (count < 0) {
            total = -1;
            break;
        }
        total += count;
        if (!missed)
            break;
    }
    serving = 0;
    return total;
}

/*
 * serve(fd, zone, stats, slow, on_error, max_batches) -> int: the same as one Reader call,
 * returning the datagrams read. The readable callback of releases before the Reader: kept
 * so that an older release's Python (a rolling upgrade's mixed ring, tests of one) still
 * answers when it finds this extension, which it does in an editable install.
 */
PyObject *fp_serve(PyObject *self, PyObject *args) {
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

/* One wakeup: serve, then report an error or a timing (under reader_call's guard). */
static PyObject *reader_wakeup(Reader *self) {
    self->wakeups += 1;
    int timed = self->wakeups % self->sample_every == 0;
    long long started = timed ? now_ns() : 0;
    /* The callables may drop the last reference to what we hold (a zone replaced by
       on_error, say): hold our own for the call. */
    PyObject *zone = self->zone;
    Py_INCREF(zone);
    long count = fp_serve_rounds(self->fd, zone, self->stats, self->slow, self->on_error,
                              self->max_batches);
    Py_DECREF(zone);
    if (count < 0) {
        /* A bug of ours, or the socket failing: on_error counts it; the server goes on.
           What is not an Exception (KeyboardInterrupt, SystemExit) goes to the loop. */
        if (!PyErr_ExceptionMatches(PyExc_Exception))
            return NULL;
        if (fp_report_error(self->on_error) < 0)
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

static PyObject *reader_call(Reader *self, PyObject *args, PyObject *kwargs) {
    if (PyTuple_GET_SIZE(args) || (kwargs && PyDict_GET_SIZE(kwargs))) {
        PyErr_SetString(PyExc_TypeError, "a Reader takes no arguments");
        return NULL;
    }
    if (!self->zone) {
        PyErr_SetString(PyExc_ValueError, "Reader not initialised");
        return NULL;
    }
    if (serving) {
        missed = 1;
        Py_RETURN_NONE;
    }
    serving = 1;
    PyObject *result = NULL;
    for (int pass = 0; pass < MAX_PASSES; pass++) {
        missed = 0;
        Py_XDECREF(result);
        result = reader_wakeup(self);
        if (!result || !missed)
            break;
    }
    serving = 0;
    return result;
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

PyTypeObject FpReaderType = {
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
