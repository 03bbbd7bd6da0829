"""Subscription models live in the cloud database (see campaignsite.routers); built in a later issue."""
