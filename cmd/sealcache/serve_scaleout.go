package main

import (
	"flag"

	"github.com/sealcache/sealcache/server"
)

// scaleoutFlags binds the settings of many nodes sharing an object store
// and PostgreSQL (README, "Running several nodes").
func scaleoutFlags(fs *flag.FlagSet, cfg *server.Config) {
	fs.StringVar(&cfg.BlobStore, "blob_store", "", "shared object store for many nodes, s3://BUCKET/PREFIX (needs --metadata_url); default: this node's disk only")
	fs.StringVar(&cfg.S3Endpoint, "s3_endpoint", "", "S3-compatible endpoint URL, such as https://minio.internal:9000 (default: AWS S3)")
	fs.StringVar(&cfg.S3Region, "s3_region", "", "region of the bucket (default: the AWS SDK's, or us-east-1 with --s3_endpoint)")
	fs.BoolVar(&cfg.S3PathStyle, "s3_path_style", false, "address the bucket as ENDPOINT/BUCKET (MinIO, Ceph, versitygw)")
	fs.StringVar(&cfg.S3AccessKeyID, "s3_access_key_id", "", "static access key id for the bucket (default: the AWS SDK's credential chain)")
	fs.StringVar(&cfg.S3SecretAccessKey, "s3_secret_access_key", "", "static secret access key for the bucket, with --s3_access_key_id")
	fs.StringVar(&cfg.MetadataURL, "metadata_url", "", "PostgreSQL for the metadata and the shared object index, postgres://USER:PASSWORD@HOST:PORT/DB (default: SQLite in --data_dir)")
	fs.Func("shared_max_size", "budget of the shared object store, such as 2TiB; least recently used objects are evicted beyond it, never inside --min_retention (default: none)", sizeFlag(&cfg.SharedMaxSize))
	fs.Func("shared_org_quota", "budget of each org in the shared object store, such as 100GiB (default: none)", sizeFlag(&cfg.SharedOrgQuota))
	fs.DurationVar(&cfg.MinRetention, "min_retention", cfg.MinRetention, "no shared object read, found or named by an action result served within this is evicted, so builds without the bytes keep working")
}
