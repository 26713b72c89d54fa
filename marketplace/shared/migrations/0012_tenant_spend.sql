-- Tenant budgets: the auctioneer sums a tenant's spend before it auctions the tenant's next task
-- (marketplace.log.ledger), joining `spend` to the tenant's tasks in `auctions`.

CREATE INDEX auctions_tenant ON auctions (tenant);
