# erpsync_tryton: a unique external id on the records erpsync writes into Tryton, so that a
# write whose answer was lost is found again by its key and never duplicated (docs/tryton.md).
