"""The database keeps the clearing arithmetic honest, whatever the code does:

* every journal's postings sum to zero (deferred constraint trigger: checked at commit, or when a service
  says ``SET CONSTRAINTS interop_posting_balances IMMEDIATE``);
* the net positions of a cycle sum to zero (same, ``interop_netposition_sums_to_zero``);
* postings, positions, the bilateral matrix and settlement instructions are append-only.
"""

from django.db import migrations

SQL = r"""
CREATE FUNCTION interop_posting_balances() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE total bigint;
BEGIN
    SELECT COALESCE(sum(amount_fen), 0) INTO total FROM interop_posting WHERE journal_id = NEW.journal_id;
    IF total <> 0 THEN
        RAISE EXCEPTION 'journal % does not balance: postings sum to % fen', NEW.journal_id, total
            USING ERRCODE = '23514';
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER interop_posting_balances AFTER INSERT ON interop_posting
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION interop_posting_balances();

CREATE FUNCTION interop_netposition_sums_to_zero() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE total bigint;
BEGIN
    SELECT COALESCE(sum(net_fen), 0) INTO total FROM interop_netposition WHERE cycle_id = NEW.cycle_id;
    IF total <> 0 THEN
        RAISE EXCEPTION 'net positions of cycle % sum to % fen, not zero', NEW.cycle_id, total
            USING ERRCODE = '23514';
    END IF;
    RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER interop_netposition_sums_to_zero AFTER INSERT ON interop_netposition
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION interop_netposition_sums_to_zero();

CREATE FUNCTION interop_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = '42501';
END $$;
CREATE TRIGGER interop_posting_append_only BEFORE UPDATE OR DELETE ON interop_posting
    FOR EACH ROW EXECUTE FUNCTION interop_append_only();
CREATE TRIGGER interop_netposition_append_only BEFORE UPDATE OR DELETE ON interop_netposition
    FOR EACH ROW EXECUTE FUNCTION interop_append_only();
CREATE TRIGGER interop_bilateral_append_only BEFORE UPDATE OR DELETE ON interop_bilateralposition
    FOR EACH ROW EXECUTE FUNCTION interop_append_only();
CREATE TRIGGER interop_instruction_append_only BEFORE UPDATE OR DELETE ON interop_settlementinstruction
    FOR EACH ROW EXECUTE FUNCTION interop_append_only();
"""

REVERSE = r"""
DROP TRIGGER interop_instruction_append_only ON interop_settlementinstruction;
DROP TRIGGER interop_bilateral_append_only ON interop_bilateralposition;
DROP TRIGGER interop_netposition_append_only ON interop_netposition;
DROP TRIGGER interop_posting_append_only ON interop_posting;
DROP FUNCTION interop_append_only();
DROP TRIGGER interop_netposition_sums_to_zero ON interop_netposition;
DROP FUNCTION interop_netposition_sums_to_zero();
DROP TRIGGER interop_posting_balances ON interop_posting;
DROP FUNCTION interop_posting_balances();
"""


class Migration(migrations.Migration):
    dependencies = [("interop", "0001_initial")]
    operations = [migrations.RunSQL(SQL, REVERSE)]
