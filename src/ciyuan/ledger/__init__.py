"""The credit ledger: prepaid balances that usage spends, in double entry.

Glossary (one word per concept, in code, tables, API, CLI and docs):

account      a named balance. *customer* accounts hold prepaid credit and may not go below
             their floor; *system* accounts (funding, revenue, expiry) have no floor.
transfer     an immutable movement of an amount from a debit account to a credit account. Every
             transfer debits one account and credits another by the same amount, so the posted
             balances of all accounts always sum to zero. Corrections are new transfers.
grant        a transfer from the funding account to a customer: credit bought or given,
             optionally expiring. Each grant opens a *lot* that spending consumes, the
             earliest-expiring lot first.
charge       a transfer from a customer to the revenue account: what a request cost, up to
             what was reserved for it.
overage      a transfer from a customer to revenue for cost beyond the reservation (a provider
             that ignored max_tokens), charged within the account's floor and no further.
refund       a reversing transfer from revenue back to the customer, for a charge or overage.
expiry       a transfer from a customer to the expiry account of what is left of an expired lot.
reservation  funds held on a customer account before a request is forwarded (TigerBeetle's
             *pending transfer*). It counts against the available balance until it is
             *settled* (a charge is posted, up to the reserved amount, the rest released) or
             *voided* (released in full); past its deadline it is voided by the sweeper.
available    credits posted − debits posted − debits pending: what a new reservation may take.
chain        every transfer is hashed with the hash of the one before it (``chain.py``); the
             position in the chain is the transfer's ``seq``. A *checkpoint* is the chain head
             and the Merkle root over every leaf up to it (``merkle.py``), signed with the
             operator's Ed25519 key; a *receipt* proves a request's transfers are in one.
"""
