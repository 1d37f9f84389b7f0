from setuptools import setup; setup(cffi_modules=["cffi_build.py:ffibuilder"])
