"""Reports on recorded usage: invoices, statements, CloudEvents; pure (no database, no I/O).

The store answers the queries (``ciyuan.store.sql_reports``); this package turns their answers
into documents whose figures sum exactly, and renders them (JSON, CSV, HTML, PDF).
"""
