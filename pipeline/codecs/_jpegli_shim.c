/* The jpegli encoder as cjpegli drives it (libjxl lib/extras/enc/jpegli.cc, EncodeJpeg), through the jpegli C API
   that pyjpegli's extension module exports. Built on first use by pipeline/codecs/jpegli.py:
       gcc -O2 -shared -fPIC -o <cache>/libjpegli_shim.so _jpegli_shim.c     (jpeglib.h: libjpeg62-turbo-dev)
   Only the libjpeg v62 struct layout comes from jpeglib.h; jpegli_CreateCompress checks sizeof(cinfo). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <setjmp.h>
#include <jpeglib.h>
/* jpegli API (exported by pyjpegli's extension module) */
void jpegli_CreateCompress(j_compress_ptr, int, size_t);
struct jpeg_error_mgr* jpegli_std_error(struct jpeg_error_mgr*);
void jpegli_mem_dest(j_compress_ptr, unsigned char**, unsigned long*);
void jpegli_set_defaults(j_compress_ptr);
void jpegli_set_quality(j_compress_ptr, int, boolean);
void jpegli_set_distance(j_compress_ptr, float, boolean);
float jpegli_quality_to_distance(int);
void jpegli_enable_adaptive_quantization(j_compress_ptr, boolean);
void jpegli_set_progressive_level(j_compress_ptr, int);
void jpegli_use_standard_quant_tables(j_compress_ptr);
void jpegli_start_compress(j_compress_ptr, boolean);
JDIMENSION jpegli_write_scanlines(j_compress_ptr, JSAMPARRAY, JDIMENSION);
void jpegli_finish_compress(j_compress_ptr);
void jpegli_destroy_compress(j_compress_ptr);
void jpegli_write_icc_profile(j_compress_ptr, const JOCTET*, unsigned int);

struct err { struct jpeg_error_mgr b; jmp_buf env; };
static void on_err(j_common_ptr c){ struct err*e=(struct err*)c->err; char m[JMSG_LENGTH_MAX]; c->err->format_message(c,m); fprintf(stderr,"jpegli: %s\n",m); longjmp(e->env,1);}

/* samp: 444/422/420/0(=library default). mode: 0 = cjpegli (quality_to_distance + set_distance), 1 = set_quality,
   2 = explicit distance. aq: -1 default. prog: -1 default. stdq: use standard quant tables. optimize: -1 default */
int shim_encode(const unsigned char* rgb, int w, int h, int quality, float distance, int mode, int samp,
                int aq, int prog, int stdq, int optimize, const unsigned char* icc, int icc_len,
                unsigned char** out, unsigned long* outsize) {
  struct jpeg_compress_struct ci; struct err e; *out=NULL; *outsize=0;
  ci.err=jpegli_std_error(&e.b); e.b.error_exit=on_err;
  if (setjmp(e.env)) { jpegli_destroy_compress(&ci); return -1; }
  jpegli_CreateCompress(&ci, JPEG_LIB_VERSION, sizeof(ci));
  jpegli_mem_dest(&ci, out, outsize);
  ci.image_width=w; ci.image_height=h; ci.input_components=3; ci.in_color_space=JCS_RGB;
  if (stdq) jpegli_use_standard_quant_tables(&ci);
  jpegli_set_defaults(&ci);
  if (samp) {
    ci.comp_info[0].h_samp_factor = samp==444?1:2; ci.comp_info[0].v_samp_factor = samp==420?2:1;
    for (int i=1;i<ci.num_components;i++){ci.comp_info[i].h_samp_factor=1;ci.comp_info[i].v_samp_factor=1;}
  }
  if (aq>=0) jpegli_enable_adaptive_quantization(&ci, aq);
  if (mode==0) jpegli_set_distance(&ci, jpegli_quality_to_distance(quality), TRUE);
  else if (mode==1) jpegli_set_quality(&ci, quality, TRUE);
  else jpegli_set_distance(&ci, distance, TRUE);
  if (prog>=0) jpegli_set_progressive_level(&ci, prog);
  if (optimize>=0) ci.optimize_coding = optimize;
  jpegli_start_compress(&ci, TRUE);
  if (icc_len>0) jpegli_write_icc_profile(&ci, icc, icc_len);
  while (ci.next_scanline < ci.image_height) { JSAMPROW r=(JSAMPROW)(rgb + (size_t)ci.next_scanline*w*3); jpegli_write_scanlines(&ci,&r,1); }
  jpegli_finish_compress(&ci); jpegli_destroy_compress(&ci); return 0;
}
void shim_free(void* p){ free(p); }
