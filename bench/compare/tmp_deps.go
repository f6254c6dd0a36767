package main

import (
	_ "github.com/cachemgr/cachemgr"
	_ "github.com/go-redis/cache/v9"
	_ "github.com/redis/rueidis"
	_ "github.com/eko/gocache/lib/v4/cache"
	_ "github.com/eko/gocache/store/redis/v4"
	_ "github.com/viccon/sturdyc"
)

func main() {}
