PRAGMA foreign_keys=OFF;
BEGIN TRANSACTION;
CREATE TABLE indexes (
	id INTEGER NOT NULL, 
	name VARCHAR(64) NOT NULL, 
	profile VARCHAR(16) NOT NULL, 
	max_file_size BIGINT NOT NULL, 
	max_project_size BIGINT NOT NULL, 
	created DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (name)
);
INSERT INTO indexes VALUES(1,'test','pypi',104857600,10737418240,'2026-12-07 05:30:09.497771');
INSERT INTO indexes VALUES(2,'prod','pypi',104857600,10737418240,'2026-12-07 05:30:09.498827');
CREATE TABLE users (
	id INTEGER NOT NULL, 
	username VARCHAR(64) NOT NULL, 
	password_hash TEXT NOT NULL, 
	is_admin BOOLEAN NOT NULL, 
	created DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (username)
);
INSERT INTO users VALUES(1,'alice','$argon2id$v=19$m=65536,t=3,p=4$s6M7enKTmFORr61s6nWarw$6uZwVq6UGMS2Yq6Wt747AIYxWlp1j1GzQm1/0hYz8R8',1,'2026-12-07 05:30:11.427262');
CREATE TABLE core_metadata (
	sha256 VARCHAR(64) NOT NULL, 
	data BLOB NOT NULL, 
	PRIMARY KEY (sha256)
);
INSERT INTO core_metadata VALUES('3027f09544c04d4b66a59b81001eb2225b06c9e664c12659eb99c36e8c620226',X'4d657461646174612d56657273696f6e3a20322e340a4e616d653a2064656d6f2d6d696772617465640a56657273696f6e3a20312e300a');
CREATE TABLE used_oidc_tokens (
	"key" VARCHAR(255) NOT NULL, 
	expires DATETIME NOT NULL, 
	PRIMARY KEY ("key")
);
CREATE TABLE jwks_cache (
	issuer TEXT NOT NULL, 
	jwks JSON NOT NULL, 
	fetched_at FLOAT NOT NULL, 
	PRIMARY KEY (issuer)
);
CREATE TABLE web_login_failures (
	id INTEGER NOT NULL, 
	username VARCHAR(64) NOT NULL, 
	client_ip VARCHAR(64) NOT NULL, 
	time DATETIME NOT NULL, 
	PRIMARY KEY (id)
);
CREATE TABLE api_tokens (
	id INTEGER NOT NULL, 
	token_hash VARCHAR(64) NOT NULL, 
	kind VARCHAR(16) NOT NULL, 
	user_id INTEGER, 
	index_id INTEGER, 
	projects JSON, 
	description TEXT NOT NULL, 
	created DATETIME NOT NULL, 
	expires DATETIME, 
	last_used DATETIME, 
	revoked DATETIME, 
	PRIMARY KEY (id), 
	UNIQUE (token_hash), 
	FOREIGN KEY(user_id) REFERENCES users (id), 
	FOREIGN KEY(index_id) REFERENCES indexes (id)
);
INSERT INTO api_tokens VALUES(1,'96ee44042ccb9a8662f46965c4f39896c1bd2f26248161e0cca5fa79fcc987ba','user',1,2,'null','','2026-12-07 05:30:12.813432',NULL,'2026-12-07 05:30:14.580071',NULL);
INSERT INTO api_tokens VALUES(2,'68f7f15ff5c4ce3520862566d3800250d38e1d2a84e6a16c105ed6220a7de4b3','user',1,1,'null','revoked-one','2026-12-07 05:30:17.735424',NULL,NULL,'2026-12-07 05:30:19.739241');
CREATE TABLE projects (
	id INTEGER NOT NULL, 
	index_id INTEGER NOT NULL, 
	name VARCHAR(255) NOT NULL, 
	normalized_name VARCHAR(255) NOT NULL, 
	similar_key VARCHAR(255), 
	status VARCHAR(16) NOT NULL, 
	status_reason TEXT NOT NULL, 
	serial INTEGER NOT NULL, 
	total_size BIGINT NOT NULL, 
	created DATETIME NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (index_id, normalized_name), 
	FOREIGN KEY(index_id) REFERENCES indexes (id)
);
INSERT INTO projects VALUES(1,2,'demo-migrated','demo-migrated','dem0m1grated','active','',2,1301,'2026-12-07 05:30:14.512518');
CREATE TABLE filename_log (
	index_id INTEGER NOT NULL, 
	filename VARCHAR(255) NOT NULL, 
	PRIMARY KEY (index_id, filename), 
	FOREIGN KEY(index_id) REFERENCES indexes (id)
);
INSERT INTO filename_log VALUES(2,'demo_migrated-1.0-py3-none-any.whl');
INSERT INTO filename_log VALUES(2,'demo_migrated-1.0.tar.gz');
CREATE TABLE publishers (
	id INTEGER NOT NULL, 
	index_id INTEGER NOT NULL, 
	kind VARCHAR(16) NOT NULL, 
	lookup_key TEXT NOT NULL, 
	config JSON NOT NULL, 
	pinned JSON NOT NULL, 
	created DATETIME NOT NULL, 
	created_by INTEGER, 
	pending_project VARCHAR(255), 
	expires DATETIME, 
	PRIMARY KEY (id), 
	FOREIGN KEY(index_id) REFERENCES indexes (id), 
	FOREIGN KEY(created_by) REFERENCES users (id)
);
INSERT INTO publishers VALUES(1,2,'github','github:octo/demo','{"owner": "octo", "repository": "demo", "workflow": "release.yml", "environment": "", "ref": "", "reusable_workflow": "", "owner_id": "", "issuer": "https://token.actions.githubusercontent.com"}','{}','2026-12-07 05:30:16.226715',NULL,NULL,NULL);
CREATE TABLE journal (
	id INTEGER NOT NULL, 
	time DATETIME NOT NULL, 
	index_id INTEGER NOT NULL, 
	project VARCHAR(255), 
	action VARCHAR(64) NOT NULL, 
	actor TEXT NOT NULL, 
	details JSON NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(index_id) REFERENCES indexes (id)
);
INSERT INTO journal VALUES(1,'2026-12-07 05:30:14.539909',2,'demo-migrated','file_upload','alice','{"filename": "demo_migrated-1.0-py3-none-any.whl", "sha256": "22008aa81d551c8c9c43cf8c13a8ad43629707863bedeef4d955bdf04535bb0b", "version": "1.0", "token_id": 1, "trusted_publishers": null}');
INSERT INTO journal VALUES(2,'2026-12-07 05:30:14.580215',2,'demo-migrated','file_upload','alice','{"filename": "demo_migrated-1.0.tar.gz", "sha256": "8ff665efcdae70dc11483fc4a8556d63b75c1e43fc27490faeb33a73708adb8a", "version": "1.0", "token_id": 1, "trusted_publishers": null}');
INSERT INTO journal VALUES(3,'2026-12-07 05:30:16.233466',2,'demo-migrated','add_publisher','admin','{"publisher_id": 1, "publisher": "GitHub octo/demo, workflow release.yml"}');
CREATE TABLE web_sessions (
	id_hash VARCHAR(64) NOT NULL, 
	user_id INTEGER NOT NULL, 
	csrf_token VARCHAR(64) NOT NULL, 
	created DATETIME NOT NULL, 
	expires DATETIME NOT NULL, 
	PRIMARY KEY (id_hash), 
	FOREIGN KEY(user_id) REFERENCES users (id) ON DELETE CASCADE
);
CREATE TABLE roles (
	project_id INTEGER NOT NULL, 
	user_id INTEGER NOT NULL, 
	role VARCHAR(16) NOT NULL, 
	PRIMARY KEY (project_id, user_id), 
	FOREIGN KEY(project_id) REFERENCES projects (id), 
	FOREIGN KEY(user_id) REFERENCES users (id)
);
INSERT INTO roles VALUES(1,1,'owner');
CREATE TABLE releases (
	id INTEGER NOT NULL, 
	project_id INTEGER NOT NULL, 
	version VARCHAR(255) NOT NULL, 
	canonical_version VARCHAR(255) NOT NULL, 
	created DATETIME NOT NULL, 
	yanked BOOLEAN NOT NULL, 
	yanked_reason TEXT NOT NULL, 
	requires_python TEXT, 
	summary TEXT, 
	info JSON NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (project_id, canonical_version), 
	FOREIGN KEY(project_id) REFERENCES projects (id)
);
INSERT INTO releases VALUES(1,1,'1.0','1','2026-12-07 05:30:14.512461',0,'',NULL,NULL,'{"name": "demo-migrated", "version": "1.0", "summary": null, "description": null, "description_content_type": null, "author": null, "author_email": null, "maintainer": null, "maintainer_email": null, "license": null, "license_expression": null, "license_files": null, "keywords": null, "classifiers": [], "platform": null, "home_page": null, "download_url": null, "requires_python": null, "requires_dist": null, "provides_extra": null, "project_urls": null, "dynamic": null}');
CREATE TABLE publisher_projects (
	publisher_id INTEGER NOT NULL, 
	project_id INTEGER NOT NULL, 
	PRIMARY KEY (publisher_id, project_id), 
	FOREIGN KEY(publisher_id) REFERENCES publishers (id) ON DELETE CASCADE, 
	FOREIGN KEY(project_id) REFERENCES projects (id)
);
INSERT INTO publisher_projects VALUES(1,1);
CREATE TABLE token_publishers (
	token_id INTEGER NOT NULL, 
	publisher_id INTEGER NOT NULL, 
	PRIMARY KEY (token_id, publisher_id), 
	FOREIGN KEY(token_id) REFERENCES api_tokens (id), 
	FOREIGN KEY(publisher_id) REFERENCES publishers (id) ON DELETE CASCADE
);
CREATE TABLE files (
	id INTEGER NOT NULL, 
	release_id INTEGER NOT NULL, 
	index_id INTEGER NOT NULL, 
	filename VARCHAR(255) NOT NULL, 
	packagetype VARCHAR(16) NOT NULL, 
	python_version VARCHAR(64) NOT NULL, 
	sha256 VARCHAR(64) NOT NULL, 
	md5 VARCHAR(32) NOT NULL, 
	blake2_256 VARCHAR(64) NOT NULL, 
	size BIGINT NOT NULL, 
	metadata_sha256 VARCHAR(64), 
	requires_python TEXT, 
	upload_time DATETIME NOT NULL, 
	uploaded_by TEXT NOT NULL, 
	publisher JSON, 
	PRIMARY KEY (id), 
	UNIQUE (index_id, filename), 
	FOREIGN KEY(release_id) REFERENCES releases (id), 
	FOREIGN KEY(index_id) REFERENCES indexes (id)
);
INSERT INTO files VALUES(1,1,2,'demo_migrated-1.0-py3-none-any.whl','bdist_wheel','py3','22008aa81d551c8c9c43cf8c13a8ad43629707863bedeef4d955bdf04535bb0b','594280806bcad032876432587ffd32b4','7a9924a36f948717e39c87a591f56c4a08976295b7b2ab105dca2b034ba78600',943,'3027f09544c04d4b66a59b81001eb2225b06c9e664c12659eb99c36e8c620226',NULL,'2026-12-07 05:30:14.512461','alice','null');
INSERT INTO files VALUES(2,1,2,'demo_migrated-1.0.tar.gz','sdist','source','8ff665efcdae70dc11483fc4a8556d63b75c1e43fc27490faeb33a73708adb8a','81d66d422a9804933b2e26cbdca29d16','90ab8b052bd611c51977b5e2ce052184a5acf82de5d86dfaa6f837fdda72fc1f',358,NULL,NULL,'2026-12-07 05:30:14.579583','alice','null');
CREATE INDEX ix_web_login_failures_time ON web_login_failures (time);
CREATE INDEX ix_projects_similar_key ON projects (index_id, similar_key);
CREATE INDEX ix_publishers_lookup ON publishers (lookup_key);
CREATE INDEX ix_journal_project ON journal (index_id, project);
CREATE INDEX ix_web_sessions_user ON web_sessions (user_id);
CREATE INDEX ix_files_release ON files (release_id);
CREATE INDEX ix_files_sha256 ON files (sha256);
COMMIT;
