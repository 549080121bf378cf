/*
 * The DNS thread's time slice: set_slice(ns), the calling thread's EEVDF slice.
 *
 * Theory of operation. Since Linux 6.6 the fair scheduler is EEVDF: a thread that wakes up
 * runs at once only if its virtual deadline is the earliest, and the thread it would displace
 * is protected until it has run its slice (RUN_TO_PARITY; about 0.7 ms times 1 + log2 of the
 * cores, 1.4 ms on two). A DNS server woken by a query on a core that something else keeps
 * busy (the agent, in a --dns-workers process's case) therefore waits up to that slice.
 * Since 6.12 a thread may ask for a shorter slice (sched_attr.sched_runtime of a SCHED_OTHER
 * thread, 0.1 to 100 ms, no privilege needed): its deadlines come sooner, and a woken thread
 * with a shorter slice than the running one's preempts it (PREEMPT_SHORT). The thread's
 * policy and nice value are kept (read with sched_getattr first). Older kernels refuse the
 * call or ignore the slice (read back: EOPNOTSUPP), and the thread keeps the default.
 */
#include "_fastpath.h"

#include <errno.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

/* struct sched_attr of sched_setattr(2), as far as SCHED_OTHER uses it. */
typedef struct {
    uint32_t size, policy;
    uint64_t flags;
    int32_t nice;
    uint32_t priority;
    uint64_t runtime, deadline, period;
} SchedAttr;

/* set_slice(ns) -> int: 0, or the errno of the system call that failed. */
PyObject *fp_set_slice(PyObject *self, PyObject *arg) {
    unsigned long long ns = PyLong_AsUnsignedLongLong(arg);
    if (ns == (unsigned long long)-1 && PyErr_Occurred())
        return NULL;
#if defined(SYS_sched_getattr) && defined(SYS_sched_setattr)
    SchedAttr attr = {0};
    if (syscall(SYS_sched_getattr, 0, &attr, sizeof(attr), 0) < 0)
        return PyLong_FromLong(errno);
    attr.size = sizeof(attr);
    attr.flags = 0;
    attr.runtime = ns;
    if (syscall(SYS_sched_setattr, 0, &attr, 0) < 0)
        return PyLong_FromLong(errno);
    /* A kernel before 6.12 takes sched_runtime of a fair thread and ignores it: read back. */
    SchedAttr now = {0};
    if (syscall(SYS_sched_getattr, 0, &now, sizeof(now), 0) < 0)
        return PyLong_FromLong(errno);
    return PyLong_FromLong(now.runtime ? 0 : EOPNOTSUPP);
#else
    return PyLong_FromLong(ENOSYS);
#endif
}
