"""pyfast.models"""
