// s3rver on 127.0.0.1:PORT keeping its buckets in DIRECTORY: node start.js PORT DIRECTORY
// (tests/store/s3_server.py). s3rver knows one hard-coded key pair; the tests' clients sign
// with the AWS variables they are given (as moto's accept any), so that pair is added to its
// account. Prints "listening" once it accepts connections.
'use strict';

const S3rver = require('s3rver');
const AWSAccount = require('s3rver/lib/models/account');

const [port, directory] = process.argv.slice(2);
const { AWS_ACCESS_KEY_ID: keyId, AWS_SECRET_ACCESS_KEY: secret } = process.env;
if (!port || !directory || !keyId || !secret) {
  console.error('usage: AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... node start.js PORT DIRECTORY');
  process.exit(2);
}
AWSAccount.DUMMY_ACCOUNT.createKeyPair(keyId, secret);
new S3rver({ address: '127.0.0.1', port: Number(port), directory, silent: true })
  .run()
  .then(() => console.log('listening'))
  .catch(error => {
    console.error(error);
    process.exit(1);
  });
