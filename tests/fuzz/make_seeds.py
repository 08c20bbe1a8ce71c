#!/usr/bin/env python3
# Regenerates the hand-made seeds of tests/fuzz/corpus/ and the reproducers in crashes/.
# corpus/unpack/real-layer.tar.zst and corpus/manifest/real.json were written by
# `stowage save` (a file store, a small tree with a symlink) and are kept as they are.
import tarfile, io, os, json, glob
HERE=os.path.dirname(os.path.abspath(__file__))
C=HERE+'/corpus/'
def tar(name, entries, fmt=tarfile.GNU_FORMAT, dest=None):
    bio=io.BytesIO()
    with tarfile.open(fileobj=bio, mode='w', format=fmt) as t:
        for e in entries:
            ti=tarfile.TarInfo(e['name'])
            ti.mtime=e.get('mtime',1700000000)
            ti.mode=e.get('mode',0o644)
            ty=e.get('type','f'); data=e.get('data',b'')
            if ty=='f': ti.type=tarfile.REGTYPE; ti.size=len(data)
            elif ty=='d': ti.type=tarfile.DIRTYPE; ti.mode=e.get('mode',0o755)
            elif ty=='l': ti.type=tarfile.SYMTYPE; ti.linkname=e['target']
            elif ty=='h': ti.type=tarfile.LNKTYPE; ti.linkname=e['target']
            elif ty=='c': ti.type=tarfile.CHRTYPE; ti.devmajor=1; ti.devminor=3
            elif ty=='p': ti.type=tarfile.FIFOTYPE
            if 'size' in e: ti.size=e['size']
            t.addfile(ti, io.BytesIO(data) if ty=='f' else None)
    b=bio.getvalue()
    b=b[:(len(b.rstrip(b'\0'))+511)//512*512+1024]  # drop the record padding: seeds stay small
    open((dest or C+'unpack/')+name,'wb').write(b)
F=lambda n,d=b'hello\n',**k: dict(name=n,type='f',data=d,**k)
D=lambda n,**k: dict(name=n,type='d',**k)
L=lambda n,t: dict(name=n,type='l',target=t)
tar('plain.tar',[F('0/a.txt'),F('0/sub/b.bin',b'\x00\x01'),L('0/link','a.txt'),L('0/sub/up','../a.txt')],fmt=tarfile.PAX_FORMAT)
tar('gnu-longname.tar',[F('0/'+'d'*120+'/'+'f'*120,b'long\n')],fmt=tarfile.GNU_FORMAT)
tar('ustar.tar',[F('0/x/y')],fmt=tarfile.USTAR_FORMAT)
tar('dotdot.tar',[F('0/../escape'),F('0/ok')])
tar('absolute.tar',[F('/tmp/stow-fuzz-abs'),F('0/ok')])
tar('noroot.tar',[F('x'),F('7/x'),F('0/ok')])
tar('hardlink.tar',[F('0/a'),dict(name='0/h',type='h',target='0/a'),dict(name='0/h2',type='h',target='../../sentinel/canary')])
tar('device.tar',[dict(name='0/null',type='c'),dict(name='0/fifo',type='p'),F('0/ok')])
tar('link-out.tar',[L('0/out','../sentinel'),L('0/abs','/etc'),F('0/ok')])
tar('link-then-file.tar',[L('0/l','sub'),F('0/sub/y'),F('0/l/x',b'through the link\n')])
tar('file-then-link.tar',[F('0/a'),L('0/a','b'),F('0/b')])
tar('modes.tar',[D('0/locked',mode=0o000),F('0/locked/f'),F('0/suid',mode=0o4755),D('0/ro',mode=0o555),F('0/ro/x')])
tar('short-data.tar',[F('0/a',b'12345',size=5)])
tar('dup.tar',[F('0/a',b'one'),F('0/a',b'two')])
tar('dir-over-file.tar',[F('0/a'),D('0/a'),F('0/a/b')])
tar('dot.tar',[F('0/./a'),F('0//b'),F('0/c/')])
# The symlink chain of issue 12 defect 1: every link passes the lexical check, t resolves to the
# sandbox (root/..), and t/sentinel/canary to the sentinel file.
tar('symlink-chain.tar',[L('0/d/s','..'),L('0/t','d/s/..'),L('0/u','t/sentinel/canary')],
    dest=HERE+'/crashes/unpack/')
# a real layer made by `stowage save`
# manifests
M=C+'manifest/'
real=json.load(open(M+'real.json'))
two=json.loads(json.dumps(real)); two['roots']=['~/c','$HOME/.cache/pip']; two['layers'].append(dict(id='f'*32,sha256='a'*64,size=10,raw_size=10240,files=1))
two['files'].append({"r":1,"p":"wheels/x.whl","t":"f","m":420,"mt":1,"ns":0,"s":3,"l":1,"h":"b"*64})
open(M+'two-roots.json','w').write(json.dumps(two,indent=1))
open(M+'empty.json','w').write('{"version":1,"key":"k","scope":"default","created":0,"roots":[],"layers":[],"files":[]}')
bad=[('dotdot.json',{"r":0,"p":"../x","t":"f","m":420,"mt":0,"ns":0,"s":1,"l":0}),
     ('link-out.json',{"r":0,"p":"a/l","t":"l","m":511,"mt":0,"ns":0,"l":0,"lt":"../../x"}),
     ('bigints.json',{"r":0,"p":"x","t":"f","m":4095,"mt":-9223372036854775808,"ns":999999999,"s":18446744073709551615,"l":0}),
     ('dir-layer.json',{"r":0,"p":"d","t":"d","m":493,"mt":0,"ns":0,"l":0})]
for n,f in bad:
    b=json.loads(json.dumps(real)); b['files'].append(f); open(M+n,'w').write(json.dumps(b))
b=json.loads(json.dumps(real)); b['files'].append(b['files'][0]); open(M+'dup.json','w').write(json.dumps(b))
open(M+'version2.json','w').write(json.dumps(dict(real,version=2)))
open(M+'dupkey.json','w').write('{"version":1,"version":1,"key":"k","scope":"s","created":0,"roots":[],"layers":[],"files":[]}')
open(M+'unicode.json','w').write('{"version":1,"key":"k\\u0000x","scope":"\\ud800","created":0,"roots":["~/\\u00e9"],"layers":[],"files":[]}')
# keys
K=C+'keys/'
for i,k in enumerate(['deps-{os}-{arch}-{hash:package-lock.json}','cargo-{hash:**/Cargo.lock, !node_modules/**}',
    'b-{branch}-{env:FUZZ_A}','{env:FUZZ_B}-{env:FUZZ_EMPTY}','{hash:src/**/*.c}','{hash:**,!src/lib}',
    '{hash:../etc/passwd}','{hash:/etc/passwd}','{unknown}','{hash:src','}','{hash:weird name \\[1\\].txt}',
    '{hash:[!a-z]*,src/[l]ib/*}','{hash:loop/**/main.c}','.hidden-{os}','v1-{hash:.git/HEAD}']):
    open(K+'%02d.txt'%i,'w').write(k)
# config
I=C+'config/'
open(I+'full.ini','w').write("""[storage]
url = s3://bucket/prefix
endpoint = http://127.0.0.1:9000
region = eu-west-1
path_style = true
verify_tls = true
connect_timeout_ms = 5000
retries = 3
parallel = 8
headers = X-A: 1
    X-B: 2

[cache]
key = deps-{os}-{hash:package-lock.json}
restore_keys = deps-{os}-
    deps-
paths = ~/.npm, ~/.cache/pip
scope = main
level = 3
threads = 2
layer_size = 64M
strict = true
checksum = yes

[prune]
max_age = 7d
max_size = 10G
grace = 1h
""")
open(I+'http.ini','w').write("[storage]\nurl = https://cache.example/x\ntoken_env = CI_TOKEN\n")
open(I+'bad-section.ini','w').write("[cache\nkey = x\n")
open(I+'unknown.ini','w').write("[cache]\nnope = 1\n[weird]\n")
open(I+'twice.ini','w').write("[cache]\nkey = a\nkey = b\n")
open(I+'long-line.ini','w').write("[cache]\nkey = "+"x"*250+"\n")
open(I+'numbers.ini','w').write("[cache]\nlevel = 99999999999999999999\nlayer_size = 18446744073709551616\nthreads = -1\n[prune]\nmax_age = 1y\ngrace = 0\n")
open(I+'with-flags.bin','wb').write(b"[cache]\nkey = k\n\x00--key\x00other\x00--path=~/x\x00-v\x00--\x00positional")
open(I+'flag-config.bin','wb').write(b"\x00--config\x00/dev/null\x00--level\x00")
# text mode of fuzz_unpack ("#entries\n", one "<type> <name> [<arg>]" per line)
T={'text-plain.txt':'f 0/a hello\nl 0/b a\nf 0/c/d x\nl 0/c/up ../a\nx 0/run #!/bin/sh\n',
   'text-links.txt':'l 0/d/s ..\nl 0/e d\nf 0/e/x through\nl 0/f/g ../d/s\n',
   'text-hostile.txt':'f 0/../x no\nf /abs no\nh 0/h 0/a\nc 0/null\np 0/fifo\nl 0/o ../sentinel\nf 0/ok yes\n'}
for n,t in T.items():
    open(C+'unpack/'+n,'w').write('#entries\n'+t)
# issue 12 defect 1 as text: u resolves to the sentinel file through t -> d/s/.. -> root/..
open(HERE+'/crashes/unpack/symlink-chain.txt','w').write('#entries\nl 0/d/s ..\nl 0/t d/s/..\nl 0/u t/sentinel/canary\n')
