/* The record scan of `format.scan_records`, recovery's grouping of records, and the writer's
packing of records (`format.pack_records`), in C.

Owns: `scan(buf, record_type, limit)` (below), `group` (recovery's hot loop) and `pack` (the
writer's), each documented at it. `scan` walks records back to back from offset 0 and returns
`(records, stop)`: every record up to the first one that fails a check, as `record_type` tuples
with the same nine fields the Python loop builds, and the offset it stopped at. The checks are exactly the Python loop's: magic, version, endian marker, next offset, entry
type, header CRC-32C (computed with the CRC field zeroed) and payload SHA-256. It never says *why*
a record is invalid: the caller re-parses the record at `stop` in Python to name the problem, so
the error messages live in one place.

Why C: recovery time is this loop. In Python it costs about 4 microseconds a record (unpack,
three slices, a CRC call, a SHA-256 call, a tuple), which put a 100k-transaction log at 1.3 s
against a 1 s target. The CRC uses the SSE 4.2 instruction where the CPU has it; SHA-256 is
OpenSSL's (the library Python's hashlib already loads). If this module cannot be built, the
Python loop runs instead, with the same results (tests compare the two). */

#define PY_SSIZE_T_CLEAN
#define OPENSSL_SUPPRESS_DEPRECATED
#include <Python.h>
#include <openssl/sha.h>
#include <stdint.h>
#include <string.h>

#define HEADER_SIZE 256
#define CRC_OFFSET 108 /* struct.calcsize("<8sII16sQQQIQ32sQ") */

static uint32_t crc_table[8][256];

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc_table[0][i] = c;
    }
    for (int t = 1; t < 8; t++)
        for (uint32_t i = 0; i < 256; i++)
            crc_table[t][i] = (crc_table[t - 1][i] >> 8) ^ crc_table[0][crc_table[t - 1][i] & 0xFF];
}

/* Slicing-by-8 software CRC-32C over `n` bytes (n a multiple of 8), state in and out
   pre-inverted. */
static uint32_t crc_sw(uint32_t c, const unsigned char *p, size_t n) {
    for (; n >= 8; n -= 8, p += 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        v ^= c;
        c = crc_table[7][v & 0xFF] ^ crc_table[6][(v >> 8) & 0xFF] ^ crc_table[5][(v >> 16) & 0xFF]
            ^ crc_table[4][(v >> 24) & 0xFF] ^ crc_table[3][(v >> 32) & 0xFF]
            ^ crc_table[2][(v >> 40) & 0xFF] ^ crc_table[1][(v >> 48) & 0xFF]
            ^ crc_table[0][v >> 56];
    }
    return c;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define HAVE_HW_CRC 1
__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t c, const unsigned char *p, size_t n) {
    uint64_t c64 = c;
    for (; n >= 8; n -= 8, p += 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c64 = __builtin_ia32_crc32di(c64, v);
    }
    return (uint32_t)c64;
}
#endif

static int use_hw_crc = 0;

/* CRC-32C of a 256-byte header with its 4-byte CRC field (at CRC_OFFSET, which is a multiple of
   4 but not of 8) taken as zero. */
static uint32_t header_crc(const unsigned char *h) {
    unsigned char block[HEADER_SIZE];
    memcpy(block, h, HEADER_SIZE);
    memset(block + CRC_OFFSET, 0, 4);
    uint32_t c = 0xFFFFFFFFu;
#ifdef HAVE_HW_CRC
    if (use_hw_crc) return ~crc_hw(c, block, HEADER_SIZE);
#endif
    return ~crc_sw(c, block, HEADER_SIZE);
}

static inline uint32_t u32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static inline uint64_t u64(const unsigned char *p) { uint64_t v; memcpy(&v, p, 8); return v; }

static PyObject *scan(PyObject *self, PyObject *args) {
    Py_buffer view;
    PyTypeObject *record_type;
    Py_ssize_t limit;
    if (!PyArg_ParseTuple(args, "y*O!n", &view, &PyType_Type, &record_type, &limit)) return NULL;
    const unsigned char *buf = view.buf;
    const uint64_t end = (uint64_t)view.len;
    PyObject *records = PyList_New(0);
    if (records == NULL) goto fail;
    uint64_t offset = 0;
    while (offset < end) {
        if (limit >= 0 && PyList_GET_SIZE(records) >= limit) break;
        if (end - offset < HEADER_SIZE) break;
        const unsigned char *h = buf + offset;
        const uint64_t start = offset + HEADER_SIZE;
        uint32_t etype = u32(h + 56);
        uint64_t size = u64(h + 60);
        if (memcmp(h, "ESPERWAL", 8) != 0 || u32(h + 8) != 2 || u32(h + 12) != 0x12345678u) break;
        if (size > end - start || u64(h + 108 - 8) != start + size) break;
        if (etype < 1 || etype > 4) break;
        if (header_crc(h) != u32(h + CRC_OFFSET)) break;
        unsigned char digest[SHA256_DIGEST_LENGTH];
        SHA256(buf + start, (size_t)size, digest);
        if (memcmp(digest, h + 68, 32) != 0) break;
        PyObject *rec = record_type->tp_alloc(record_type, 9);
        if (rec == NULL) goto fail;
        PyObject *items[9] = {
            PyLong_FromUnsignedLongLong(offset),
            PyBytes_FromStringAndSize((const char *)h + 16, 16),
            PyLong_FromUnsignedLongLong(u64(h + 32)),
            PyLong_FromUnsignedLongLong(u64(h + 40)),
            PyLong_FromUnsignedLongLong(u64(h + 48)),
            PyLong_FromUnsignedLong(etype),
            PyLong_FromUnsignedLongLong(size),
            PyBytes_FromStringAndSize((const char *)h + 68, 32),
            PyBytes_FromStringAndSize((const char *)buf + start, (Py_ssize_t)size),
        };
        int bad = 0;
        for (int i = 0; i < 9; i++) {
            if (items[i] == NULL) bad = 1;
            PyTuple_SET_ITEM(rec, i, items[i]); /* a NULL slot is fine for Py_DECREF of rec */
        }
        if (bad || PyList_Append(records, rec) < 0) { Py_DECREF(rec); goto fail; }
        Py_DECREF(rec);
        offset = start + size;
    }
    PyBuffer_Release(&view);
    return Py_BuildValue("(NK)", records, (unsigned long long)offset);
fail:
    Py_XDECREF(records);
    PyBuffer_Release(&view);
    return NULL;
}

/* group(records, start, txns, committed, committed_type, segment, checkpoint_tid)
   -> (stop, aborted): recovery's grouping of records into transactions (`recovery._group`), for
   the records it can decide alone: a BEGIN not seen before, a DATA or ABORT of an open
   transaction, a COMMIT of one with exactly one DATA whose Merkle root matches. At anything else
   (a duplicate BEGIN, an orphan, a root that does not match, a COMMIT over several DATA) it
   returns that record's index, for the Python loop to handle and name; the state (`txns`: txn id
   -> [BEGIN, [DATA...], end mark]) is the Python loop's own, so either can take over at any
   record. The end marks are the strings the Python loop uses ("committed", "aborted").
   Why C: after the scan, this loop was the other half of recovery time (about 0.9 microseconds a
   record in Python). */
static const char hexdigits[] = "0123456789abcdef";
static PyObject *mark_committed, *mark_aborted; /* interned at import */

static PyObject *group(PyObject *self, PyObject *args) {
    PyObject *records, *txns, *committed, *segment, *checkpoint_tid;
    PyTypeObject *ct_type;
    Py_ssize_t i;
    if (!PyArg_ParseTuple(args, "O!nO!O!O!OO", &PyList_Type, &records, &i, &PyDict_Type, &txns,
                          &PyList_Type, &committed, &PyType_Type, &ct_type, &segment,
                          &checkpoint_tid))
        return NULL;
    long aborted = 0;
    const Py_ssize_t n = PyList_GET_SIZE(records);
    for (; i < n; i++) {
        PyObject *rec = PyList_GET_ITEM(records, i);
        if (!PyTuple_Check(rec) || PyTuple_GET_SIZE(rec) != 9) {
            PyErr_SetString(PyExc_TypeError, "records must be Record tuples");
            return NULL;
        }
        long etype = PyLong_AsLong(PyTuple_GET_ITEM(rec, 5));
        if (etype == -1 && PyErr_Occurred()) return NULL;
        PyObject *tid = PyTuple_GET_ITEM(rec, 1);
        if (etype == 1) {
            int seen = PyDict_Contains(txns, tid);
            if (seen < 0) return NULL;
            if (seen) break;
            PyObject *data = PyList_New(0);
            PyObject *acc = data ? PyList_New(3) : NULL;
            if (acc == NULL) { Py_XDECREF(data); return NULL; }
            Py_INCREF(rec);
            PyList_SET_ITEM(acc, 0, rec);
            PyList_SET_ITEM(acc, 1, data);
            Py_INCREF(Py_None);
            PyList_SET_ITEM(acc, 2, Py_None);
            int bad = PyDict_SetItem(txns, tid, acc);
            Py_DECREF(acc);
            if (bad < 0) return NULL;
            continue;
        }
        PyObject *acc = PyDict_GetItemWithError(txns, tid); /* borrowed */
        if (acc == NULL) {
            if (PyErr_Occurred()) return NULL;
            break; /* an orphan */
        }
        if (PyList_GET_ITEM(acc, 2) != Py_None) break; /* already ended: an orphan */
        PyObject *data = PyList_GET_ITEM(acc, 1);
        if (etype == 2) {
            if (PyList_Append(data, rec) < 0) return NULL;
            continue;
        }
        if (etype == 4) {
            Py_INCREF(mark_aborted);
            PyList_SetItem(acc, 2, mark_aborted);
            aborted++;
            continue;
        }
        /* COMMIT: root = sha256(DATA digest || BEGIN digest), as merkle_root_from_hash does for
           one segment; the payload must be its hex. */
        if (PyList_GET_SIZE(data) != 1) break;
        PyObject *begin = PyList_GET_ITEM(acc, 0);
        PyObject *one = PyList_GET_ITEM(data, 0);
        PyObject *data_sha = PyTuple_GET_ITEM(one, 7), *begin_sha = PyTuple_GET_ITEM(begin, 7);
        PyObject *payload = PyTuple_GET_ITEM(rec, 8);
        if (!PyBytes_Check(data_sha) || !PyBytes_Check(begin_sha) || !PyBytes_Check(payload)
            || PyBytes_GET_SIZE(data_sha) != 32 || PyBytes_GET_SIZE(begin_sha) != 32)
            break;
        unsigned char joined[64], digest[SHA256_DIGEST_LENGTH];
        char hex[64];
        memcpy(joined, PyBytes_AS_STRING(data_sha), 32);
        memcpy(joined + 32, PyBytes_AS_STRING(begin_sha), 32);
        SHA256(joined, 64, digest);
        for (int k = 0; k < 32; k++) {
            hex[2 * k] = hexdigits[digest[k] >> 4];
            hex[2 * k + 1] = hexdigits[digest[k] & 15];
        }
        if (PyBytes_GET_SIZE(payload) != 64 || memcmp(PyBytes_AS_STRING(payload), hex, 64) != 0)
            break; /* a Merkle mismatch: Python names it */
        if (!PyBytes_Check(tid)) break;
        char tid_hex[32];
        const unsigned char *t = (const unsigned char *)PyBytes_AS_STRING(tid);
        Py_ssize_t tid_len = PyBytes_GET_SIZE(tid);
        if (tid_len != 16) break;
        for (int k = 0; k < 16; k++) {
            tid_hex[2 * k] = hexdigits[t[k] >> 4];
            tid_hex[2 * k + 1] = hexdigits[t[k] & 15];
        }
        int is_checkpoint = 0;
        if (checkpoint_tid != Py_None) {
            is_checkpoint = PyObject_RichCompareBool(tid, checkpoint_tid, Py_EQ);
            if (is_checkpoint < 0) return NULL;
        }
        PyObject *payloads = PyList_New(1);
        if (payloads == NULL) return NULL;
        PyObject *data_payload = PyTuple_GET_ITEM(one, 8);
        Py_INCREF(data_payload);
        PyList_SET_ITEM(payloads, 0, data_payload);
        PyObject *ct = ct_type->tp_alloc(ct_type, 8);
        if (ct == NULL) { Py_DECREF(payloads); return NULL; }
        PyObject *items[8] = {
            PyUnicode_FromStringAndSize(tid_hex, 32),
            PyTuple_GET_ITEM(begin, 8),
            payloads,
            PyUnicode_FromStringAndSize(hex, 64),
            PyTuple_GET_ITEM(begin, 3),
            segment,
            PyTuple_GET_ITEM(rec, 0),
            PyBool_FromLong(is_checkpoint),
        };
        Py_INCREF(items[1]);
        Py_INCREF(items[4]);
        Py_INCREF(items[5]);
        Py_INCREF(items[6]);
        int bad = 0;
        for (int k = 0; k < 8; k++) {
            if (items[k] == NULL) bad = 1;
            PyTuple_SET_ITEM(ct, k, items[k]);
        }
        if (bad || PyList_Append(committed, ct) < 0) { Py_DECREF(ct); return NULL; }
        Py_DECREF(ct);
        Py_INCREF(mark_committed);
        PyList_SetItem(acc, 2, mark_committed);
    }
    return Py_BuildValue("(nl)", i, aborted);
}

/* pack(records, sequence, offset, timestamp_ns) -> bytes: the records (objects with `txn_id`,
   `entry_type`, `payload`, `sha256` and `epoch`, as the writer's `PendingRecord`) as one buffer
   of header + payload each, the first at `offset` of its segment with sequence number `sequence`,
   exactly as `format.pack_record` packs them one by one. Unlike `struct`'s "16s" and "32s", it
   refuses a transaction id that is not 16 bytes or a digest that is not 32.
   Why C: the writer packs every record of a round before its one write, with the GIL held and
   the disk idle; in Python a round of eight records took 12.9 microseconds (a struct pack, three
   slices and a CRC call each), 2.6 here, and every microsecond the writer spends between two
   writes costs eight committing threads about 1% of their rate. */
static PyObject *attr_txn_id, *attr_entry_type, *attr_payload, *attr_sha256, *attr_epoch;

static void put32(unsigned char *p, uint32_t v) { memcpy(p, &v, 4); }
static void put64(unsigned char *p, uint64_t v) { memcpy(p, &v, 8); }

static PyObject *pack(PyObject *self, PyObject *args) {
    PyObject *records;
    unsigned long long sequence, offset, timestamp;
    if (!PyArg_ParseTuple(args, "OKKK", &records, &sequence, &offset, &timestamp)) return NULL;
    PyObject *seq = PySequence_Fast(records, "records must be a sequence");
    if (seq == NULL) return NULL;
    const Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    /* Per record: txn_id, payload, sha256 (new references), entry type and epoch. */
    PyObject **fields = PyMem_Calloc(n ? (size_t)n * 3 : 1, sizeof(PyObject *));
    unsigned long long *numbers = PyMem_Calloc(n ? (size_t)n * 2 : 1, sizeof(unsigned long long));
    PyObject *out = NULL;
    if (fields == NULL || numbers == NULL) { PyErr_NoMemory(); goto done; }
    Py_ssize_t total = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *r = items[i];
        PyObject **f = fields + 3 * i;
        if ((f[0] = PyObject_GetAttr(r, attr_txn_id)) == NULL
            || (f[1] = PyObject_GetAttr(r, attr_payload)) == NULL
            || (f[2] = PyObject_GetAttr(r, attr_sha256)) == NULL)
            goto done;
        if (!PyBytes_Check(f[0]) || PyBytes_GET_SIZE(f[0]) != 16 || !PyBytes_Check(f[1])
            || !PyBytes_Check(f[2]) || PyBytes_GET_SIZE(f[2]) != 32) {
            PyErr_Format(PyExc_ValueError,
                         "record %zd: txn_id must be 16 bytes, payload bytes, sha256 32 bytes", i);
            goto done;
        }
        PyObject *etype = PyObject_GetAttr(r, attr_entry_type);
        if (etype == NULL) goto done;
        numbers[2 * i] = PyLong_AsUnsignedLongLong(etype);
        Py_DECREF(etype);
        PyObject *epoch = PyObject_GetAttr(r, attr_epoch);
        if (epoch == NULL) goto done;
        numbers[2 * i + 1] = PyLong_AsUnsignedLongLong(epoch);
        Py_DECREF(epoch);
        if (PyErr_Occurred()) goto done;
        if (numbers[2 * i] < 1 || numbers[2 * i] > 4) {
            PyErr_Format(PyExc_ValueError, "record %zd: entry type %llu is not 1-4", i, numbers[2 * i]);
            goto done;
        }
        total += HEADER_SIZE + PyBytes_GET_SIZE(f[1]);
    }
    out = PyBytes_FromStringAndSize(NULL, total);
    if (out == NULL) goto done;
    unsigned char *p = (unsigned char *)PyBytes_AS_STRING(out);
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject **f = fields + 3 * i;
        const uint64_t size = (uint64_t)PyBytes_GET_SIZE(f[1]);
        memcpy(p, "ESPERWAL", 8);
        put32(p + 8, 2);
        put32(p + 12, 0x12345678u);
        memcpy(p + 16, PyBytes_AS_STRING(f[0]), 16);
        put64(p + 32, sequence + (uint64_t)i);
        put64(p + 40, numbers[2 * i + 1]);
        put64(p + 48, timestamp);
        put32(p + 56, (uint32_t)numbers[2 * i]);
        put64(p + 60, size);
        memcpy(p + 68, PyBytes_AS_STRING(f[2]), 32);
        offset += HEADER_SIZE + size;
        put64(p + 100, offset);
        memset(p + CRC_OFFSET, 0, HEADER_SIZE - CRC_OFFSET);
        put32(p + CRC_OFFSET, header_crc(p));
        memcpy(p + HEADER_SIZE, PyBytes_AS_STRING(f[1]), (size_t)size);
        p += HEADER_SIZE + size;
    }
done:
    if (fields != NULL)
        for (Py_ssize_t i = 0; i < 3 * n; i++) Py_XDECREF(fields[i]);
    PyMem_Free(fields);
    PyMem_Free(numbers);
    Py_DECREF(seq);
    if (PyErr_Occurred()) { Py_XDECREF(out); return NULL; }
    return out;
}

static PyObject *hardware_crc(PyObject *self, PyObject *unused) {
    return PyBool_FromLong(use_hw_crc);
}

static PyObject *crc32c_header(PyObject *self, PyObject *args) {
    Py_buffer view;
    if (!PyArg_ParseTuple(args, "y*", &view)) return NULL;
    if (view.len != HEADER_SIZE) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError, "a header is 256 bytes");
        return NULL;
    }
    uint32_t c = header_crc(view.buf);
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLong(c);
}

static PyMethodDef methods[] = {
    {"scan", scan, METH_VARARGS,
     "scan(buf, record_type, limit) -> (records, stop): valid records from offset 0."},
    {"header_crc", crc32c_header, METH_VARARGS,
     "header_crc(header) -> CRC-32C of 256 header bytes with the CRC field zeroed."},
    {"hardware_crc", hardware_crc, METH_NOARGS, "True when the CRC uses the CPU's instruction."},
    {"group", group, METH_VARARGS,
     "group(records, start, txns, committed, committed_type, segment, checkpoint_tid)"
     " -> (stop, aborted): group records into transactions until one needs the Python loop."},
    {"pack", pack, METH_VARARGS,
     "pack(records, sequence, offset, timestamp_ns) -> bytes: records packed back to back."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_scan", NULL, -1, methods};

PyMODINIT_FUNC PyInit__scan(void) {
    crc_init();
#ifdef HAVE_HW_CRC
    __builtin_cpu_init();
    use_hw_crc = __builtin_cpu_supports("sse4.2");
#endif
    mark_committed = PyUnicode_InternFromString("committed");
    mark_aborted = PyUnicode_InternFromString("aborted");
    if (mark_committed == NULL || mark_aborted == NULL) return NULL;
    attr_txn_id = PyUnicode_InternFromString("txn_id");
    attr_entry_type = PyUnicode_InternFromString("entry_type");
    attr_payload = PyUnicode_InternFromString("payload");
    attr_sha256 = PyUnicode_InternFromString("sha256");
    attr_epoch = PyUnicode_InternFromString("epoch");
    if (!attr_txn_id || !attr_entry_type || !attr_payload || !attr_sha256 || !attr_epoch)
        return NULL;
    return PyModule_Create(&module);
}
