"""Taking a terminal's signed batch (批量上传): verify once, validate in one pass, store set-wise.

One module per part, read top-down (docs/ingestion.md, "The ingestion package"):

* ``service``: ``batch_ingest``, the whole path on one screen;
* ``decode``: the body on the wire, in the common form (msgspec) or the general way, and its header;
* ``spec``: the tap's fields, types and bounds (``TAP_SPEC``), and the readable check made from it;
* ``validate``: the same check unrolled, what runs per tap on the general path;
* ``signature``: the signer, read in one lookup, and its Ed25519 signature;
* ``outcomes``: each tap accepted, duplicate, conflict or rejected, and routed;
* ``storage``: the SQL with named rows, the claim under the terminal's lock, the COPY;
* ``ack``: the signed acknowledgement, and its rebuilding for a resend.

The path of one upload, in a fixed number of round trips whatever the batch size (5 with django-tenants'
SET search_path, BEGIN and COMMIT once the month partitions are known, plus the COPY):

1. size; the body decoded in the common form or else the general way; signature structure; **one
   lookup** (storage.upload_lookup); one Ed25519 verification over the canonical payload;
2. terminal active, payload's terminal and tenant match; a stored batch of that id: same content → the
   same acknowledgement, byte for byte (``ack_rebuild``); other content → 409, logged in the audit chain;
3. in the transaction: each tap validated unless the common form checked it, told apart from a repeat
   within the batch, and routed by issuer (cached);
4. month partitions ensured (cached per process); **the claim** (storage.taps_claim) under the
   terminal's row lock; **COPY** of the new taps straight into the month partitions;
5. the batch's own checks (checks.BATCH_CHECKS); the checks against stored data (checks.STORED_CHECKS)
   and the roaming hand-off run here only with ``TERMINAL_VERIFY = "inline"``, else in the verification
   stage (verify.py) after the commit; the acknowledgement written in its canonical form and signed;
   **one round trip** stores the batch row, flags, exceptions and the terminal's high-water mark;
   **COMMIT** (synchronous: the terminal deletes its batch once acknowledged).

A refusal (``BatchRefused``) happens before anything is written, or rolls everything back.
"""

from citycard.tenants.terminals.ingest.ack import ack_canonical, ack_parts, ack_rebuild
from citycard.tenants.terminals.ingest.decode import BatchRefused, CommonBatch, common_decode
from citycard.tenants.terminals.ingest.service import IngestResult, batch_ingest
from citycard.tenants.terminals.ingest.spec import (
    TAP_SPEC,
    TAP_STATUSES_PREFIX,
    TAPPED_AT_MAX_AGE,
    TAPPED_AT_MAX_AHEAD,
    TapWindow,
    tap_window,
)

__all__ = [
    "TAPPED_AT_MAX_AGE",
    "TAPPED_AT_MAX_AHEAD",
    "TAP_SPEC",
    "TAP_STATUSES_PREFIX",
    "BatchRefused",
    "CommonBatch",
    "IngestResult",
    "TapWindow",
    "ack_canonical",
    "ack_parts",
    "ack_rebuild",
    "batch_ingest",
    "common_decode",
    "tap_window",
]
