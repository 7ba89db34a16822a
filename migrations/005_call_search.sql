-- Call search by number pages newest first: the digits indexes carry the
-- whole sort key, so each side of a number search (calls from it, calls to
-- it) is one index range scan that stops after the page, however many
-- calls the number has.
create index calls_from_digits_page_idx on calls (from_digits, start_time desc, id desc);
create index calls_to_digits_page_idx on calls (to_digits, start_time desc, id desc);
drop index calls_from_digits_idx;
drop index calls_to_digits_idx;

---- create above / drop below ----

create index calls_from_digits_idx on calls (from_digits, start_time desc);
create index calls_to_digits_idx on calls (to_digits, start_time desc);
drop index calls_to_digits_page_idx;
drop index calls_from_digits_page_idx;
