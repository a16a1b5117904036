# Cython declarations for parser.py (pure-Python mode): the compiled build types the Parser's
# state and calls its internal steps directly. The .py file stays the one source of behaviour
# and runs unchanged where the extension is not built (see docs/protocol.md, "Speed").

cdef int _TOP, _THOUGHT, _RESPONSE, _BODY, _SKIP, _CLOSED
cdef int _FAST_NONE, _FAST_HOLD, _FAST_THOUGHT, _FAST_RESPONSE, _FAST_PREFIX, _FAST_SPACE
cdef Py_ssize_t _TAG_MIN

cdef class Parser:
    cdef public Py_ssize_t max_body
    cdef public Py_ssize_t max_pending
    cdef public bint model_output
    cdef bytes _utf8_cut
    cdef int _fast_cut
    cdef bint _closed
    cdef str _buf
    cdef Py_ssize_t _pos
    cdef Py_ssize_t _base
    cdef int _mode
    cdef bint _final
    cdef Py_ssize_t _ctx_start
    cdef str _ctx_tag
    cdef object _element
    cdef object _scanner
    cdef str _skip_prefix
    cdef int _parent
    cdef Py_ssize_t _stray_at
    cdef str _stray_snippet
    cdef bint _tag_wait
    cdef Py_ssize_t _ordinal
    cdef set _ids
    cdef int _fast
    cdef list _hold
    cdef Py_ssize_t _held
    cdef str _stop
    cdef Py_ssize_t _room
    cdef object _prefixes

    cdef list _feed_bytes(self, object data)
    cdef str _end_utf8(self)
    cdef list _feed(self, str chunk)
    cdef list _body_markup(self, str chunk)
    cdef list _text_markup(self, str chunk)
    cdef list _prefix_markup(self, str chunk)
    cdef void _arm(self)
    cdef list _close(self)
    cdef void _run(self, list out, bint final) except *
    cdef bint _step_text(self, list out, bint final) except -1
    cdef void _emit_text(self, list out, list pieces) except *
    cdef object _delta(self, str text)
    cdef bint _step_top(self, list out, bint final) except -1
    cdef void _stray(self, str buf, Py_ssize_t start, Py_ssize_t end) except *
    cdef void _flush_stray(self, list out) except *
    cdef Py_ssize_t _tag(self, list out, str buf, Py_ssize_t i, object tag) except -1
    cdef void _open_text(self, list out, str name, dict attrs, list problems, object tag, Py_ssize_t at, str text) except *
    cdef bint _step_body(self, list out, bint final) except -1
    cdef bint _fallback(self, list out) except -1
    cdef void _leave_body(self)
    cdef bint _step_skip(self, list out, bint final) except -1
    cdef void _finish(self, list out, object element, str raw, Py_ssize_t end, str how) except *
    cdef object _error(self, str code, str message, Py_ssize_t offset, str snippet=*, object action_id=*)
    cdef list _internal_error(self, object exc)

cdef Py_ssize_t _close_tail(str buf, Py_ssize_t j, bint final) except -2
