"""Interop actions (public schema), one module per topic, named after its services' entity where there is
one. Every public service is listed here with its module (tests/interop/test_layout.py keeps the table
complete); docs/clearing.md tells the whole story.

==================  ======================================================================================
module              services
==================  ======================================================================================
``agreements``      ``agreement_set``, ``agreement_version_add``
``messages``        ``message_receive``, ``message_deliver``, ``outbox_collect``, ``outboxes_collect``,
                    ``messages_deliver`` (many of a kind), ``message_handler`` (how a topic takes a kind)
``records``         the ``clearing.records`` (taps) and ``medical.claim`` messages; ``records_insert``
``cycles``          ``cycle_get_or_create``, ``cycle_open_from``, ``cycle_close``, ``cycle_validate``,
                    ``cycle_net``, ``cycle_settle``, ``cycle_run``, ``cycles_resume_claim``,
                    ``cycle_reached`` (whether a step is done)
``validation``      ``issuer_validate``, ``issuer_validation_store``, ``rejections_apply``
``netting``         ``positions_net``, ``settlement_instruct``, ``settlement_value_date`` (the net and
                    settle steps' work), ``matrix_picture_store`` (the matrix as the console draws it)
``reconciliation``  ``reconciliation_files_send``, ``reconciliation_totals``, ``reconciliation_csv``,
                    ``reconciliation_text``, ``reconciliation_packed``; the ``clearing.reconciliation``
                    answer
``disputes``        ``dispute_raise``, ``dispute_resolve``; the ``clearing.dispute`` message
``hotlist``         ``hotlists_exchange``, ``network_hotlists_deliver``; the ``hotlist.update`` message
==================  ======================================================================================

Reads are in ``citycard.interop.selectors``; the agreement's terms as pure rules (version in force,
business date, cycle window, fee rounding) in ``citycard.interop.terms``. Tenants are reached only through
``citycard.tenants.exchange`` services run in their schema.

Importing the package imports every topic, so each registers the message kinds it takes
(``messages.message_handler``) before a message is received.
"""

from citycard.interop.services import (
    agreements,
    cycles,
    disputes,
    hotlist,
    messages,
    netting,
    reconciliation,
    records,
    validation,
)

__all__ = [
    "agreements",
    "cycles",
    "disputes",
    "hotlist",
    "messages",
    "netting",
    "reconciliation",
    "records",
    "validation",
]
