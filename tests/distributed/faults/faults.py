"""The options the fault modules of this package set on their deployment (conftest.py)."""

# RPC calls live 20 s: long enough that a dead conductor's scheduler call outlives the restarts of test_faults.
RPC_TIMEOUT = 20
SHELVE_TIMEOUT = 12  # [compute] shelve_timeout: a shelve or unshelve stuck this long is ended
CELL1_HOSTS = ("cell1-host1", "cell1-host2")  # compute-cell1's: the process the tests kill
